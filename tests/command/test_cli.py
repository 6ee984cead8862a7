"""The qxt command in a subprocess: formats, encodings, exit codes, interrupts, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import FENCED_KEY, QXT, SAMPLE, SECRET, make_simulator, qxt

from qxt_pandas.simulator import SimulatorTransport, serve


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    rows = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False).head(400)
    return rows.assign(mobile=rows["mobile"].str.replace("\u00a0", " "))  # GBK has no non-breaking space


@pytest.fixture(scope="module")
def expected(sample) -> pd.DataFrame:
    """What the accessor says about the same rows: the command must agree."""
    return sample.qxt.check("mobile", apikey=SECRET, base_url="http://127.0.0.1",
                            transport=SimulatorTransport(make_simulator()), progress=False)  # fmt: skip


def agree(out: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(out["customer_id"]) == list(expected["customer_id"])  # every row, in input order
    assert list(out["name"]) == list(expected["name"])  # Chinese text survived the encoding
    for column in ("qxt_mobile", "Status", "Now_isp", "qxt_code"):
        assert out[column].astype(object).where(out[column].notna(), None).tolist() == (
            expected[column].astype(object).where(expected[column].notna(), None).tolist()
        ), column


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("utf8.csv", lambda df, p: df.to_csv(p, index=False, encoding="utf-8")),
        ("bom.csv", lambda df, p: df.to_csv(p, index=False, encoding="utf-8-sig")),
        ("gbk.csv", lambda df, p: df.to_csv(p, index=False, encoding="gbk", errors="strict")),
        ("gb18030.csv", lambda df, p: df.to_csv(p, index=False, encoding="gb18030")),
        ("tabs.tsv", lambda df, p: df.to_csv(p, index=False, sep="\t")),
        ("export.parquet", lambda df, p: df.to_parquet(p, index=False)),
        ("export.xlsx", lambda df, p: df.to_excel(p, index=False)),
    ],
)
def test_each_input_format_and_encoding(tmp_path, service, sample, expected, name, write):
    sim, url = service
    source = tmp_path / name
    write(sample, source)
    result = qxt("check", source, "--column", "mobile", "--output", tmp_path / "out.parquet", "--base-url", url)
    assert result.returncode == 0, result.stderr
    agree(pd.read_parquet(tmp_path / "out.parquet"), expected)
    assert sim.ledger.paid_twice() == {}


def test_csv_output_excel_friendly_and_named_encoding(tmp_path, service, sample, expected):
    _, url = service
    sample.to_csv(tmp_path / "in.csv", index=False, encoding="gbk")
    out = tmp_path / "out.csv"
    result = qxt("check", tmp_path / "in.csv", "--column", "mobile", "--output", out, "--base-url", url,
                 "--encoding", "gbk", "--excel-friendly")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    read = pd.read_csv(out, dtype={"customer_id": str, "mobile": str, "qxt_mobile": str}, encoding="utf-8-sig",
                       keep_default_na=False, na_values=[""])  # fmt: skip
    assert read["qxt_mobile"].dropna().str.startswith("\t").all()  # phone numbers stay text in Excel
    read["qxt_mobile"] = read["qxt_mobile"].str.removeprefix("\t")
    agree(read, expected)


def test_a_checkpoint_makes_the_second_run_free_and_logs_progress(tmp_path, service):
    sim, url = service
    args = ("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "o.parquet", "--base-url", url,
            "--checkpoint", tmp_path / "ck.qxt")  # fmt: skip
    first = qxt(*args)
    assert first.returncode == 0 and "QXT " in first.stderr and "paid queries" in first.stderr
    paid = len(sim.ledger)
    second = qxt(*args)
    assert second.returncode == 0 and len(sim.ledger) == paid
    assert "paid queries 0" in second.stderr


def test_dry_run_spends_nothing(tmp_path, service):
    sim, url = service
    result = qxt("check", SAMPLE, "--column", "mobile", "--dry-run", "--base-url", url)
    assert result.returncode == 0 and len(sim.ledger) == 0
    assert "to query" in result.stdout and "balance" in result.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "key", "code", "says"),
    [
        (["--column", "phone", "--output", "o.parquet"], SECRET, 2, "no column 'phone'"),
        (["--column", "mobile", "--output", "x.json"], SECRET, 2, ".parquet, .csv, .tsv or .xlsx"),
        (["--column", "mobile"], SECRET, 2, "--output is required"),
        (["--column", "mobile", "--output", "o.parquet", "--max-age", "soon"], SECRET, 2, "max_age"),
        (["--column", "mobile", "--output", "o.parquet"], None, 3, "QXT_APIKEY"),
        (["--column", "mobile", "--output", "o.parquet"], "x" * 32, 3, "QXT_APIKEY"),
        (["--column", "mobile", "--output", "o.parquet"], FENCED_KEY, 3, "allow-list"),
    ],
)
def test_exit_codes(tmp_path, service, args, key, code, says):
    sim, url = service
    result = qxt("check", SAMPLE, *args, "--base-url", url, key=key, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert says in result.stderr and len(sim.ledger) == 0
    assert not any(p.suffix == ".parquet" for p in tmp_path.iterdir())


def test_usage_errors_from_argparse_and_missing_input(tmp_path):
    assert qxt("check").returncode == 2
    result = qxt("check", tmp_path / "nope.csv", "--column", "mobile", "--output", tmp_path / "o.parquet")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_balance_too_low_and_exhausted_mid_run(tmp_path, service):
    sim, url = service
    sim.accounts[SECRET].balance = 50
    args = ("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "o.parquet", "--base-url", url,
            "--checkpoint", tmp_path / "ck.qxt")  # fmt: skip
    refused = qxt(*args)
    assert refused.returncode == 4 and "Nothing was spent" in refused.stderr and len(sim.ledger) == 0
    exhausted = qxt(*args, "--budget", "5000")
    assert exhausted.returncode == 4 and "Run the same check again" in exhausted.stderr
    assert len(sim.ledger) == 50 and not (tmp_path / "o.parquet").exists()
    sim.accounts[SECRET].balance = 100_000
    assert qxt(*args).returncode == 0 and sim.ledger.paid_twice() == {}


def test_an_unreachable_service_is_exit_1(tmp_path):
    result = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "o.parquet",
                 "--base-url", "http://127.0.0.1:9", "--retries", "0")  # fmt: skip
    assert result.returncode == 1 and "No output was written" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_a_resumable_checkpoint_and_no_output(tmp_path, sig):
    sim = make_simulator(latency=0.05)
    sim.accounts[SECRET].balance = 100_000
    out, checkpoint = tmp_path / "o.parquet", tmp_path / "ck.qxt"
    env = {**os.environ, "QXT_APIKEY": SECRET}
    with serve(sim) as url:
        args = [*QXT, "check", str(SAMPLE), "--column", "mobile", "--output",
                str(out), "--base-url", url, "--checkpoint", str(checkpoint), "--concurrency", "8"]  # fmt: skip
        child = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(sim.ledger) < 40 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.005)
        child.send_signal(sig)
        sent = time.monotonic()
        _, err = child.communicate(timeout=30)
        assert child.returncode == 130 and time.monotonic() - sent < 3
        assert "Run the same command again to resume" in err and SECRET not in err
        assert list(tmp_path.glob("*.parquet")) == [] and list(tmp_path.glob(".*partial")) == []
        paid = len(sim.ledger)
        assert 40 <= paid < 2000
        resumed = qxt(*args[3:-2], "--concurrency", "64")  # the same command, run again
    assert resumed.returncode == 0 and out.exists()
    assert sum(n - 1 for n in sim.ledger.paid(SECRET).values()) <= 8  # only what was in flight


def test_the_readme_command_with_the_bundled_simulator(tmp_path):
    result = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "checked.csv", "--simulate", key=None)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "checked.csv", dtype=str)) == 3000 and "by Status" in result.stderr


def test_balance_and_apikey_file(tmp_path, service):
    _, url = service
    (tmp_path / "key").write_text(SECRET + "\n")
    result = qxt("balance", "--base-url", url, "--apikey-file", tmp_path / "key", key=None)
    assert result.returncode == 0 and result.stdout.strip() == "预付费 100000"


def test_python_dash_m_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "qxt_pandas", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "exit codes" in result.stdout and "130" in result.stdout


def test_simulate_serves_until_stopped():
    child = subprocess.Popen([*QXT, "simulate", "--port", "0", "--latency", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        url = child.stdout.readline().split()[-1]
        from qxt_pandas import Client
        from qxt_pandas.simulator import DEMO_APIKEY

        with Client(DEMO_APIKEY, base_url=url) as client:
            assert client.balance().fee_type == "预付费"
    finally:
        child.terminate()
        child.wait(10)


def test_progress_json_is_one_object_a_line_for_programs(tmp_path, service):
    _, url = service
    pd.DataFrame({"m": [f"139{i:08d}" for i in range(300)]}).to_csv(tmp_path / "in.csv", index=False)
    done = qxt("check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "out.csv", "--no-checkpoint",
               "--base-url", url, "--progress", "json")  # fmt: skip
    objects = [json.loads(line) for line in done.stderr.splitlines()]  # every line one JSON object
    lines = [o["progress"] for o in objects if "progress" in o]
    assert done.returncode == 0 and lines, done.stderr
    last = lines[-1]
    assert last["done"] == last["total"] == 300 and last["counts"]["answered"] + last["counts"]["no info"] == 300
    assert {"rate", "eta", "in_flight", "allowed", "pushbacks", "from_checkpoint"} <= set(last)
