"""qxt serve on a shared machine (issue 30): exact origins, a cookie per console, tokens that never make a 500,
bad requests that get a 4xx, any column name and any file name running to the end, formulas defused in CSVs.
Real ``qxt serve`` processes against the simulator in this test process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import httpx
import pandas as pd
import pytest
from conftest import SECRET, rich
from test_serve import console, run_to_end, upload

from qxt_pandas.simulator import _answers, serve

pytest.importorskip("starlette")


def _cookie_client(c, **more) -> httpx.Client:
    """A browser's view: the token only in the console's cookie (the first visit set it)."""
    bare = httpx.Client(base_url=c.base, timeout=30, **more)
    first = bare.get(f"/?token={c.token}", follow_redirects=False)
    assert first.status_code == 303
    (name,) = [k for k in first.cookies]
    assert name == f"qxt_token_{c.base.rsplit(':', 1)[1]}"  # the cookie names its console's port
    return bare


def test_a_post_carried_by_the_cookie_must_come_from_exactly_this_origin(tmp_path):
    sim = rich()
    csv = tmp_path / "in.csv"
    csv.write_text("mobile\n13800000001\n")
    with serve(sim) as url, console(tmp_path, url) as c, contextlib.closing(_cookie_client(c)) as browser:
        port = c.base.rsplit(":", 1)[1]
        elsewhere = [f"http://127.0.0.1:{port}0", f"http://127.0.0.1:{port}.evil.example", f"http://127.0.0.1:{port}0000",
                     f"https://127.0.0.1:{port}", f"http://localhost.evil:{port}", "null"]  # fmt: skip
        for origin in elsewhere:
            with open(csv, "rb") as f:
                forged = browser.post("/api/jobs", files={"file": ("in.csv", f)}, headers={"Origin": origin})
            assert forged.status_code == 401, origin
            with open(csv, "rb") as f:
                referred = browser.post("/api/jobs", files={"file": ("in.csv", f)},
                                        headers={"Referer": f"{origin}/page"})  # fmt: skip
            assert referred.status_code == 401, origin
        with open(csv, "rb") as f:
            mine = browser.post("/api/jobs", files={"file": ("in.csv", f)}, headers={"Origin": c.base})
        assert mine.status_code == 200
    assert len(sim.ledger) == 0


@pytest.mark.parametrize("where", ["query", "bearer", "cookie"])
def test_any_token_value_is_a_401_never_a_500(tmp_path, where):
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c, httpx.Client(base_url=c.base, timeout=30) as bare:
        port = c.base.rsplit(":", 1)[1]
        for value in ["tök", "\u200b", "x" * 5000, "%00", c.token + "é", "😀"]:
            if where == "query":
                got = bare.get("/", params={"token": value})
            elif where == "bearer":
                got = bare.get("/api/jobs", headers={"Authorization": b"Bearer " + value.encode()})  # raw UTF-8 bytes
            else:
                got = bare.get("/api/jobs", headers={"Cookie": f"qxt_token_{port}=".encode() + value.encode()})
            assert got.status_code == 401, (where, value)


def test_a_token_that_cannot_be_typed_or_sent_is_refused_at_start(tmp_path):
    env = {**os.environ, "QXT_APIKEY": SECRET, "QXT_SERVE_TOKEN": "tök-with-an-umlaut-0000"}
    args = [
        sys.executable,
        "-m",
        "qxt_pandas.cli",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "serve"),
    ]
    started = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 2 and "QXT_SERVE_TOKEN" in started.stderr


def test_bad_requests_get_a_4xx_and_a_failed_upload_leaves_nothing(tmp_path):
    sim = rich()
    (tmp_path / "ragged.csv").write_text("a,b\n1,2,3,4\n5\n" + "x,y\n" * 10)
    (tmp_path / "ok.csv").write_text("mobile\n13800000001\n")
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        job = upload(http, tmp_path / "ok.csv")["id"]
        for body in (b"[]", b'"mobile"', b"not json", b'{"column": 5}', b"\xff\xfe"):
            got = http.post(f"/api/jobs/{job}/plan", content=body, headers={"Content-Type": "application/json"})
            assert got.status_code == 400 and "column" in got.json()["error"], body
        before = sorted(p.name for p in (c.data / "jobs").iterdir())
        with open(tmp_path / "ragged.csv", "rb") as f:
            ragged = http.post("/api/jobs", files={"file": ("ragged.csv", f)})
        assert 400 <= ragged.status_code < 500 and str(c.data) not in ragged.text
        assert sorted(p.name for p in (c.data / "jobs").iterdir()) == before  # nothing left behind
    assert len(sim.ledger) == 0


def test_any_column_name_and_a_long_chinese_file_name_run_to_the_end(tmp_path, monkeypatch):
    sim = rich()
    name = "客户导出" * 21 + ".csv"  # 84 Chinese characters: 252 bytes before the suffix
    path = tmp_path / "in.csv"
    pd.DataFrame({"-phone": ["13800000001", "13800000002"], "--output": ["x", "y"]}).to_csv(path, index=False)
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, path, name=name, column="-phone")
        done = run_to_end(http, made["id"], states=("done",))
        checked = [f for f in done["files"] if f.endswith(".checked.csv")]
        assert checked == [name.removesuffix(".csv") + ".checked.csv"]
        got = http.get(f"/api/jobs/{made['id']}/files/{checked[0]}")
        assert got.status_code == 200 and "filename*=utf-8''" in got.headers["content-disposition"]
    assert len(sim.ledger) == 2


def test_a_vendor_status_that_looks_like_a_formula_is_defused_in_the_csv_download(tmp_path, monkeypatch):
    real = _answers.answer

    def hostile(mobile: str):
        outcome, result = real(mobile)
        if result is not None:
            result = {**result, "Status": '=HYPERLINK("http://evil.example","正常")'}
        return outcome, result

    monkeypatch.setattr(_answers, "answer", hostile)
    sim = rich()
    path = tmp_path / "in.csv"
    path.write_text("mobile\n13800000001\n")
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, path)
        done = run_to_end(http, made["id"], states=("done",))
        text = http.get(f"/api/jobs/{made['id']}/files/{done['files'][0]}").content.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


def test_a_file_of_too_many_columns_is_refused_at_once_and_a_csv_named_xlsx_is_read_as_csv(tmp_path):
    import time

    sim = rich()
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(50_000)) + "\n" + ",".join("1" for _ in range(50_000)) + "\n")
    named = tmp_path / "named.xlsx"
    named.write_text("mobile\n13800000001\n13800000002\n")
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        started = time.monotonic()
        with open(wide, "rb") as f:
            refused = http.post("/api/jobs", files={"file": ("wide.csv", f)})
        assert refused.status_code == 400 and "50,000 columns" in refused.json()["error"]
        assert time.monotonic() - started < 10  # (it took 34 s and +458 MiB to plan before)
        assert not list((c.data / "jobs").iterdir())
        made = upload(http, named)
        assert made["plan"]["unique"] == 2 and made["column"] == "mobile"
        assert run_to_end(http, made["id"], states=("done",))["files"]
    assert len(sim.ledger) == 2


def test_a_workbooks_sheets_are_listed_in_the_plan_and_one_can_be_chosen(tmp_path):
    sim = rich()
    book = tmp_path / "crm.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame({"说明": ["导出说明", "2026-12"]}).to_excel(writer, sheet_name="说明", index=False)
        pd.DataFrame({"name": ["a", "b"], "mobile": ["13800000001", "13800000002"]}).to_excel(
            writer, sheet_name="客户", index=False)  # fmt: skip
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, book)
        job = http.get(f"/api/jobs/{made['id']}").json()
        assert job["sheets"] == ["说明", "客户"] and job["sheet"] == "说明"
        chosen = http.post(f"/api/jobs/{made['id']}/plan", json={"sheet": "客户"}).json()
        assert chosen["sheet"] == "客户" and chosen["column"] == "mobile" and chosen["plan"]["unique"] == 2
        assert run_to_end(http, made["id"], states=("done",))["summary"]["paid"] == 2
    assert len(sim.ledger) == 2


def test_a_very_long_name_keeps_its_suffix_and_random_requests_never_make_a_500(tmp_path):
    import random

    sim = rich()
    path = tmp_path / "in.csv"
    path.write_text("mobile\n13800000001\n")
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, path, name="导" * 200 + ".csv")
        assert made["plan"]["unique"] == 1
        job = made["id"]
        rng = random.Random(28)
        routes = [("POST", "/api/jobs"), ("POST", f"/api/jobs/{job}/plan"), ("POST", f"/api/jobs/{job}/stop"),
                  ("GET", f"/api/jobs/{job}"), ("GET", "/api/jobs"), ("DELETE", "/api/jobs/nope"),
                  ("POST", f"/api/jobs/{job}/nope"), ("GET", f"/api/jobs/{job}/files/x"),
                  ("GET", "/api/info")]  # fmt: skip
        kinds = ["application/json", "multipart/form-data; boundary=x", "multipart/form-data", "text/plain",
                 "application/x-www-form-urlencoded", ""]  # fmt: skip
        for _ in range(150):
            method, route = rng.choice(routes)
            body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 100, 3000])))
            if rng.random() < 0.3:
                body = rng.choice([b"[]", b"{}", b'{"column": []}', b'"x"', b"--x\r\n", b"null", b'{"sheet": 1}'])
            headers = {"Content-Type": rng.choice(kinds)} if rng.random() < 0.8 else {}
            got = http.request(method, route, content=body, headers=headers)
            assert got.status_code < 500, (method, route, body[:40], headers, got.status_code, got.text[:200])
    assert len(sim.ledger) == 0


def test_a_workbook_that_unpacks_to_a_thousand_times_its_size_is_refused_at_once(tmp_path):
    import time
    import zipfile

    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/worksheets/sheet1.xml", "<row><c><v>1</v></c></row>" * 4_000_000)  # ~100 MB of rows
    assert bomb.stat().st_size < 1_000_000
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        started = time.monotonic()
        with open(bomb, "rb") as f:
            refused = http.post("/api/jobs", files={"file": ("bomb.xlsx", f)})
        assert refused.status_code == 400 and "times its size" in refused.json()["error"]
        assert time.monotonic() - started < 10 and not list((c.data / "jobs").iterdir())


def test_the_data_dir_quota_refuses_an_upload_with_a_clear_message_and_keeps_nothing(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("mobile\n" + "13800000001\n" * 5000)
    sim = rich()
    with serve(sim) as url, console(tmp_path, url, "--max-data", "150k") as c, c.client() as http:
        upload(http, path)  # 60 KB: fits
        with open(path, "rb") as f:
            refused = http.post("/api/jobs", files={"file": ("in.csv", f)})
        assert refused.status_code == 507 and "--max-data" in refused.json()["error"]
        assert len(list((c.data / "jobs").iterdir())) == 1
