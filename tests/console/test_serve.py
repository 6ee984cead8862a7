"""qxt serve (issue 23): the JSON API end to end, against the simulator, with real processes.

The console runs as ``qxt serve`` in a process of its own; the simulator it asks runs in this test
process, so its ledger shows what was paid.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import QXT, SAMPLE, SECRET, make_simulator, qxt, wait_for

from qxt_pandas.simulator import _answers, serve

pytest.importorskip("starlette")


@dataclass
class Console:
    base: str
    token: str
    data: Path
    proc: subprocess.Popen[str]

    def client(self, **more) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30, **more)


@contextlib.contextmanager
def console(tmp_path: Path, url: str, *more: str) -> Iterator[Console]:
    data = tmp_path / "serve"
    env = {**os.environ, "QXT_APIKEY": SECRET}
    env.pop("QXT_SERVE_TOKEN", None)
    proc = subprocess.Popen([*QXT, "serve", "--port", "0", "--base-url", url,
                             "--data-dir", str(data), *more], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        first = proc.stdout.readline().strip() if proc.stdout else ""
        second = proc.stdout.readline().strip() if proc.stdout else ""
        assert first.startswith("http://127.0.0.1:") and second.startswith("token: "), first + (
            proc.stderr.read() if proc.stderr else ""
        )
        base, token = first.rstrip("/"), second.removeprefix("token: ")
        yield Console(base, token, data, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        told = proc.stderr.read() if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        assert SECRET not in told  # the key never leaves the server's env


def rich(**knobs):
    sim = make_simulator(**knobs)
    sim.accounts[SECRET].balance = 100_000
    return sim


def upload(http: httpx.Client, path: Path, name: str | None = None, **fields) -> dict:
    with open(path, "rb") as f:
        response = http.post("/api/jobs", files={"file": (name or path.name, f)}, data=fields)
    assert response.status_code == 200, response.text
    return response.json()


def run_to_end(http: httpx.Client, job: str, states=("done",)) -> dict:
    assert http.post(f"/api/jobs/{job}/run").status_code == 200
    final: dict = {}

    def ended() -> bool:
        final.update(http.get(f"/api/jobs/{job}").json())
        return final["state"] not in ("queued", "running", "stopping")

    assert wait_for(ended, timeout=120)
    assert final["state"] in states, final
    return final


def test_plan_pays_nothing_and_a_run_writes_what_qxt_check_writes(tmp_path):
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, SAMPLE)
        assert made["column"] == "mobile" and len(sim.ledger) == 0  # guessed, and free
        plan = made["plan"]
        assert plan["rows"] == 3000 and plan["to_query"] == plan["unique"] and plan["in_checkpoint"] == 0
        done = run_to_end(http, made["id"])
        assert done["files"][:2] == ["crm_export.checked.csv", "crm_export.checked.xlsx"]
        assert done["files"][-3:] == ["crm_export.split.zip", "crm_export.report.html", "结果库报告.store-report.html"]
        assert done["summary"]["rows"] == 3000 and done["summary"]["paid"] == len(sim.ledger)
        assert done["progress"]["done"] == done["progress"]["total"] == plan["to_query"]
        web = http.get(f"/api/jobs/{made['id']}/files/crm_export.checked.csv")
        assert web.status_code == 200 and "attachment" in web.headers["content-disposition"]
        store = c.data / "answers.qxt"
        paid = len(sim.ledger)
        mine = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "cli.csv", "--checkpoint", store,
                   "--base-url", url, "--excel-friendly")  # fmt: skip
        assert mine.returncode == 0 and len(sim.ledger) == paid  # the command found every answer the page paid for
        assert web.content == (tmp_path / "cli.csv").read_bytes()
        zipped = zipfile.ZipFile(io.BytesIO(http.get(f"/api/jobs/{made['id']}/files/crm_export.split.zip").content))
        workbook = pd.read_excel(io.BytesIO(http.get(f"/api/jobs/{made['id']}/files/crm_export.checked.xlsx").content),
                                 dtype=str)  # fmt: skip
        assert (
            len(workbook) == 3000 and workbook["mobile"].tolist() == pd.read_csv(SAMPLE, dtype=str)["mobile"].tolist()
        )
        counts = {n: len(pd.read_excel(io.BytesIO(zipped.read(n)), dtype=str)) for n in zipped.namelist()}
        assert sum(counts.values()) == 3000 and counts["crm_export.正常.xlsx"] == done["summary"]["outcomes"]["正常"]


def test_a_second_upload_pays_nothing_and_overlapping_jobs_pay_each_number_once(tmp_path):
    sim = rich(latency=0.01)
    first = pd.DataFrame({"m": [f"139{i:08d}" for i in range(300)]})
    second = pd.DataFrame({"m": [f"139{i:08d}" for i in range(150, 450)]})
    first.to_csv(tmp_path / "a.csv", index=False)
    second.to_csv(tmp_path / "b.csv", index=False)
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        a, b = upload(http, tmp_path / "a.csv"), upload(http, tmp_path / "b.csv")
        assert http.post(f"/api/jobs/{a['id']}/run").json()["state"] in ("queued", "running")
        run_to_end(http, b["id"])  # queued behind a: one paying job per store
        run_to_end(http, a["id"])
        assert sim.ledger.paid_twice() == {} and len(set(sim.ledger.paid(SECRET))) <= 450
        again = upload(http, tmp_path / "a.csv")
        assert again["plan"]["in_checkpoint"] == 300 and again["plan"]["to_query"] == 0
        paid = len(sim.ledger)
        done = run_to_end(http, again["id"])
    assert len(sim.ledger) == paid and done["summary"]["paid"] == 0


def test_stop_keeps_what_was_paid_and_run_resumes(tmp_path):
    sim = rich(latency=0.05)
    pd.DataFrame({"m": [f"138{i:08d}" for i in range(2000)]}).to_csv(tmp_path / "big.csv", index=False)
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        job = upload(http, tmp_path / "big.csv")["id"]
        http.post(f"/api/jobs/{job}/run")
        assert wait_for(lambda: len(sim.ledger) >= 200, timeout=60)
        http.post(f"/api/jobs/{job}/stop")
        assert wait_for(lambda: http.get(f"/api/jobs/{job}").json()["state"] == "stopped", timeout=60)
        stopped = len(sim.ledger)
        assert stopped < 2000
        done = run_to_end(http, job)
    assert done["summary"]["rows"] == 2000 and sim.ledger.paid_twice() == {}


def test_no_token_no_entry_and_a_cookie_only_from_this_origin(tmp_path):
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c:
        bare = httpx.Client(base_url=c.base, timeout=30)
        assert bare.get("/api/jobs").status_code == 401 and bare.get("/").status_code == 401
        assert bare.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        first = bare.get(f"/?token={c.token}")
        cookie = first.headers["set-cookie"].lower()
        assert first.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie
        page = bare.get("/")  # the cookie is kept by the client, as a browser keeps it
        assert page.status_code == 200 and "号码状态检测" in page.text and c.token not in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        with open(SAMPLE, "rb") as f:
            forged = bare.post("/api/jobs", files={"file": ("x.csv", f)}, headers={"Origin": "https://evil.example"})
        assert forged.status_code == 401 and len(sim.ledger) == 0
        assert "https://" not in page.text and "http://" not in page.text.replace("http://www.w3.org", "")


def test_an_upload_over_the_limit_is_refused_with_413_and_kept_nowhere(tmp_path):
    sim = rich()
    with serve(sim) as url, console(tmp_path, url, "--max-upload", "10KB") as c, c.client() as http:
        with open(SAMPLE, "rb") as f:
            refused = http.post("/api/jobs", files={"file": ("crm.csv", f)})
        assert refused.status_code == 413 and "10 KB" in refused.json()["error"]
        chunked = http.post(
            "/api/jobs", content=iter([b"--x\r\n"] * 3), headers={"Content-Type": "multipart/form-data; boundary=x"}
        )
        assert chunked.status_code == 411  # no length, no upload: nothing is spooled unbounded
        assert list((c.data / "jobs").iterdir()) == []


def test_a_hostile_file_name_writes_nowhere_else(tmp_path):
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, SAMPLE, name="../../../escape.csv")
        job = http.get(f"/api/jobs/{made['id']}").json()
        assert job["name"] == "escape.csv"
        assert not (tmp_path / "escape.csv").exists() and not (c.data / "escape.csv").exists()
        assert sorted(p.name for p in (c.data / "jobs" / made["id"]).iterdir()) == ["input.csv", "job.json"]
        assert http.get(f"/api/jobs/{made['id']}/files/..%2F..%2Fjob.json").status_code == 404
        assert http.get(f"/api/jobs/{made['id']}/files/input.csv").status_code == 404  # only what it listed


def test_script_in_a_header_a_value_and_the_vendors_status_stays_text(tmp_path, monkeypatch):
    evil = "<script>alert(1)</script>"
    monkeypatch.setitem(_answers.DOCUMENTED, "13912345678", {"Mobile": "13912345678", "Status": evil, "Area": evil,
                        "Is_MNP": "0", "Init_isp": "中国移动", "Now_isp": "中国移动"})  # fmt: skip
    pd.DataFrame({evil: ["x", evil], "m": ["13912345678", evil]}).to_csv(tmp_path / "evil.csv", index=False)
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, tmp_path / "evil.csv", name=f"{evil}.csv")
        done = run_to_end(http, made["id"])
        assert made["column"] == "m" and evil in done["columns"]
        listing = http.get("/api/jobs")
        assert listing.headers["content-type"].startswith("application/json")
        name = next(name for name in done["files"] if name.endswith(".report.html"))
        report = http.get(f"/api/jobs/{made['id']}/files/{name}")
        assert report.status_code == 200 and "<script>alert" not in report.text and "&lt;script&gt;" in report.text
        assert report.headers["content-security-policy"] == "sandbox"  # a download never runs as this origin
        page = http.get("/").text + http.get("/static/app.js").text
        assert "innerHTML" not in page and "insertAdjacentHTML" not in page  # the page writes text nodes only


def test_a_restart_marks_a_running_job_stopped_and_run_resumes_it(tmp_path):
    sim = rich(latency=0.05)
    pd.DataFrame({"m": [f"137{i:08d}" for i in range(2000)]}).to_csv(tmp_path / "big.csv", index=False)
    with serve(sim) as url:
        with console(tmp_path, url) as c, c.client() as http:
            job = upload(http, tmp_path / "big.csv")["id"]
            http.post(f"/api/jobs/{job}/run")
            assert wait_for(lambda: len(sim.ledger) >= 200, timeout=60)
        # the server stopped (its run got a Ctrl-C and kept its answers); a new one on the same directory
        with console(tmp_path, url) as c, c.client() as http:
            before = http.get(f"/api/jobs/{job}").json()
            assert before["state"] == "stopped" and before["error"]
            done = run_to_end(http, job)
    assert done["summary"]["rows"] == 2000 and sim.ledger.paid_twice() == {}


def test_stop_twice_still_keeps_the_answers_in_flight(tmp_path):
    sim = rich(latency=0.3)  # slow answers: many in flight when the stop comes
    pd.DataFrame({"m": [f"135{i:08d}" for i in range(600)]}).to_csv(tmp_path / "slow.csv", index=False)
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        job = upload(http, tmp_path / "slow.csv")["id"]
        http.post(f"/api/jobs/{job}/run")
        assert wait_for(lambda: len(sim.ledger) >= 50, timeout=60)
        http.post(f"/api/jobs/{job}/stop")
        http.post(f"/api/jobs/{job}/stop")  # an impatient second click: not the command's second Ctrl-C
        assert wait_for(lambda: http.get(f"/api/jobs/{job}").json()["state"] == "stopped", timeout=60)
        charged = set(sim.ledger.paid(SECRET))
        done = run_to_end(http, job)
    assert done["summary"]["rows"] == 600 and sim.ledger.paid_twice() == {}
    assert charged <= set(sim.ledger.paid(SECRET))


def test_jobs_older_than_keep_days_are_deleted_with_their_files(tmp_path):
    sim = rich()
    with serve(sim) as url:
        with console(tmp_path, url) as c, c.client() as http:
            job = upload(http, SAMPLE)["id"]
        assert (c.data / "jobs" / job / "input.csv").exists()
        with console(tmp_path, url, "--keep-days", "0.000001") as c, c.client() as http:  # 0.09 s
            assert http.get("/api/jobs").json()["jobs"] == []
            assert http.get(f"/api/jobs/{job}").status_code == 404
        assert not (c.data / "jobs" / job).exists()
