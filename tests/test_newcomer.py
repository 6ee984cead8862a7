"""What a newcomer meets: counts that add up, honest reports, spreadsheets that read right (issue 20)."""

from __future__ import annotations

import re

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
    assert "Simulated data" in page and "<title>QXT report (simulated data)" in page and made.made in page
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
