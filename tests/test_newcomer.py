"""What a newcomer meets: counts that add up, honest reports, spreadsheets that read right (issue 20)."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from conftest import SAMPLE, SECRET, make_simulator, qxt

import qxt_pandas
from qxt_pandas.simulator import SimulatorTransport, serve


def rich(**knobs):
    sim = make_simulator(**knobs)
    sim.accounts[SECRET].balance = 100_000
    return sim


def run(tmp_path, output: str, *more: object):
    sim = rich()
    with serve(sim) as url:
        result = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / output, "--base-url", url,
                     "--progress", "off", *more)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_the_summary_accounts_for_every_row(tmp_path):
    err = run(tmp_path, "out.csv").stderr
    line = next(x for x in err.splitlines() if x.startswith("qxt: rows") or x.startswith("rows "))
    total, parts = re.match(r".*rows ([\d,]+) = (.*)", line).groups()
    counted = sum(int(n.replace(",", "")) for n in re.findall(r" ([\d,]+)(?: \+|$)", parts))
    out = pd.read_csv(tmp_path / "out.csv", dtype=str)
    assert counted == int(total.replace(",", "")) == len(out)
    assert "no information" in line and "answered rows by Status" in err
    assert f"no information {int((out['qxt_code'] == '-4').sum()):,}" in line
    assert "for Excel" in err  # a plain CSV says how to get one Excel reads


def test_province_shares_are_of_all_answered_numbers(tmp_path):
    run(tmp_path, "out.parquet")
    made = qxt_pandas.report(tmp_path / "out.qxt")
    assert sum(made.by_province.values()) == made.answered  # every answered number, unknown areas included
    text = str(made)
    share = re.search(r"provinces: \S+ ([\d,]+) \(([\d.]+)%\)", text)
    assert abs(float(share.group(2)) - 100 * int(share.group(1).replace(",", "")) / made.answered) < 0.06
    assert "其他 others" in text and "numbers, not rows" in text
    page = made.to_html()
    assert "Simulated data" in page and "QXT report（模拟数据 simulated data）" in page and made.made in page
    assert "其他 others" in page and "(numbers)" in page


def test_parquet_output_round_trips_the_accessors_dtypes(tmp_path):
    run(tmp_path, "out.parquet")
    read = pd.read_parquet(tmp_path / "out.parquet")
    crm = pd.read_csv(SAMPLE, dtype=str).head(30)
    sim = rich()
    checked = crm.qxt.check("mobile", apikey=SECRET, base_url="http://simulator", transport=SimulatorTransport(sim),
                            progress=False)  # fmt: skip
    for name in ("Status", "Is_MNP", "qxt_code", "qxt_checked_at", "qxt_error"):
        assert str(read[name].dtype) == str(checked[name].dtype), name
    assert pq.read_schema(tmp_path / "out.parquet").pandas_metadata is not None


def test_excel_friendly_csv_keeps_phone_numbers_as_text_and_gbk_output_reads_as_gbk(tmp_path):
    run(tmp_path, "x.csv", "--excel-friendly")
    raw = (tmp_path / "x.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b'"\t13972565391"' in raw
    run(tmp_path, "g.csv", "--output-encoding", "gbk")
    text = (tmp_path / "g.csv").read_bytes().decode("gb18030")  # GBK, and the rare characters GBK lacks
    assert "正常" in text and "湖北-宜昌" in text


# -- inputs and messages, all before paying -----------------------------------------------------


def test_utf16_input_is_read_and_latin1_on_gbk_warns(tmp_path):
    sample = pd.read_csv(SAMPLE, dtype=str).head(100)
    sample.to_csv(tmp_path / "u16.txt", sep="\t", index=False, encoding="utf-16")  # Excel's "Unicode text"
    sim = rich()
    with serve(sim) as url:
        ok = qxt("check", tmp_path / "u16.txt", "--column", "mobile", "--output", tmp_path / "u.csv", "--base-url",
                 url, "--progress", "off")  # fmt: skip
        sample.to_csv(tmp_path / "gbk.csv", index=False, encoding="gb18030")
        warned = qxt("check", tmp_path / "gbk.csv", "--column", "mobile", "--encoding", "latin-1", "--dry-run",
                     "--base-url", url)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert pd.read_csv(tmp_path / "u.csv", dtype=str)["name"].tolist() == sample["name"].tolist()
    assert "GBK read as Latin-1" in warned.stderr


def test_odd_inputs_get_clear_errors_before_paying(tmp_path):
    from openpyxl import Workbook

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "adir").mkdir()
    (tmp_path / "blank.csv").write_text("\n\nmobile\n13972565391\n")
    (tmp_path / "ok.csv").write_text("mobile\n13972565391\n")
    book = Workbook()
    book.active.append(["mobile", "mobile"])
    book.active.append(["13972565391", "13900000001"])
    book.save(tmp_path / "dup.xlsx")
    cases = [("loop", [], "Too many levels"), ("adir", [], "is a directory"), ("blank.csv", [], "blank line"),
             ("ok.csv", ["--sheet", "2"], "--sheet applies to .xlsx"), ("dup.xlsx", [], "more than once")]  # fmt: skip
    sim = rich()
    with serve(sim) as url:
        for name, more, says in cases:
            result = qxt("check", tmp_path / name, "--column", "mobile", "--output", tmp_path / "o.csv",
                         "--base-url", url, *more)  # fmt: skip
            assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr, name
    assert len(sim.ledger) == 0


def test_an_xlsx_header_with_an_empty_cell_and_a_float_phone_column(tmp_path):
    from openpyxl import Workbook, load_workbook

    book = Workbook()
    book.active.append(["mobile", "name", None])
    book.active.append(["13972565391", "张三", "x"])
    book.save(tmp_path / "in.xlsx")
    pd.DataFrame({"mobile": [13972565391.0, 13900000001.0]}).to_parquet(tmp_path / "f.parquet")
    sim = rich()
    with serve(sim) as url:
        a = qxt("check", tmp_path / "in.xlsx", "--column", "mobile", "--output", tmp_path / "a.csv", "--base-url", url)
        b = qxt("check", tmp_path / "f.parquet", "--column", "mobile", "--output", tmp_path / "b.xlsx", "--base-url",
                url)  # fmt: skip
    assert a.returncode == 0 and "column 3" in (tmp_path / "a.csv").read_text(encoding="utf-8")
    assert b.returncode == 0, b.stderr
    cells = [row[0] for row in load_workbook(tmp_path / "b.xlsx").worksheets[0].iter_rows(min_row=2, values_only=True)]
    assert cells == ["13972565391", "13900000001"]  # text, never 1.39E+10


def test_damaged_receipt_fields_and_a_directory_for_html_are_told_plainly(tmp_path):
    run(tmp_path, "out.parquet")
    with open(tmp_path / "out.qxt" / "receipts.jsonl", "a") as f:
        f.write('{"run": "x", "started": 5, "by_code": "bad", "paid": "many", "balance_before": "a"}\n{"run": ["y"]}\n')
    shown = qxt("report", tmp_path / "out.qxt", key=None)
    assert shown.returncode == 0 and "damaged" in shown.stderr
    (tmp_path / "page").mkdir()
    html = qxt("report", tmp_path / "out.qxt", "--html", tmp_path / "page", key=None)
    assert html.returncode == 2 and "is a directory" in html.stderr and "--no-checkpoint" not in html.stderr


def test_a_key_file_saved_with_a_bom_works(tmp_path):
    from qxt_pandas.service._secret import Secret

    assert Secret.wrap("\ufeff" + SECRET + "\r\n").reveal() == SECRET
    options = qxt_pandas.CheckOptions(max_age=np.timedelta64(1, "D"))
    assert options.max_age == 86400


def test_a_double_bom_and_a_newline_in_a_column_name_are_read(tmp_path):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfmobile,name\n13972565391,a\n")
    (tmp_path / "nl.csv").write_text('"mobile","the\nname"\n13972565391,a\n', encoding="utf-8")
    sim = rich()
    with serve(sim) as url:
        for name in ("bom.csv", "nl.csv"):
            result = qxt("check", tmp_path / name, "--column", "mobile", "--output", tmp_path / f"o-{name}",
                         "--base-url", url)  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert pd.read_csv(tmp_path / f"o-{name}", dtype=str)["Status"].tolist() == ["正常"]


def test_answers_another_run_gave_count_as_taken_from_the_checkpoint(tmp_path):
    import subprocess
    import sys

    from conftest import wait_for

    sim = rich(latency=0.05)
    numbers = [f"135{i:08d}" for i in range(400)]
    pd.DataFrame({"m": numbers}).to_csv(tmp_path / "in.csv", index=False)
    env = {**os.environ, "QXT_APIKEY": SECRET}
    with serve(sim) as url:
        args = [
            sys.executable,
            "-m",
            "qxt_pandas.cli",
            "check",
            str(tmp_path / "in.csv"),
            "--column",
            "m",
            "--checkpoint",
            str(tmp_path / "c.qxt"),
            "--base-url",
            url,
            "--progress",
            "off",
            "--concurrency",
            "8",
        ]
        first = subprocess.Popen([*args, "--output", str(tmp_path / "a.csv")], env=env, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 20, timeout=60)
        second = subprocess.run([*args, "--output", str(tmp_path / "b.csv")], env=env, capture_output=True, text=True)
        first.communicate(timeout=120)
    assert second.returncode == 0 and sim.ledger.paid_twice() == {}
    taken = int(re.search(r"from the checkpoint ([\d,]+)", second.stderr).group(1).replace(",", ""))
    paid = int(re.search(r"paid queries ([\d,]+)", second.stderr).group(1).replace(",", ""))
    assert taken > 0 and taken + paid >= 390  # every number accounted for: stored, or paid by this run


def test_a_ragged_row_is_named_by_line_and_a_5_mib_row_is_read(tmp_path):
    (tmp_path / "rag.csv").write_text("mobile,name\n13972565391,a\n13900000001,b,extra\n")
    (tmp_path / "big.csv").write_text("mobile,note\n13972565391," + "x" * (5 << 20) + "\n13900000001,y\n")
    sim = rich()
    with serve(sim) as url:
        ragged = qxt("check", tmp_path / "rag.csv", "--column", "mobile", "--output", tmp_path / "r.csv",
                     "--base-url", url)  # fmt: skip
        assert ragged.returncode == 2 and "line 3 has 3 fields where the header has 2" in ragged.stderr
        assert len(sim.ledger) == 0
        big = qxt("check", tmp_path / "big.csv", "--column", "mobile", "--output", tmp_path / "b.parquet",
                  "--base-url", url)  # fmt: skip
    assert big.returncode == 0, big.stderr
    assert pd.read_parquet(tmp_path / "b.parquet")["note"].str.len().max() == 5 << 20
