"""The command checks what it can before paying, keeps what it paid for, and says what happened.

Every test is a real ``qxt`` process against the simulator over loopback; the
simulator's ledger says what was paid for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import QXT, SECRET, make_simulator, qxt, read_only, wait_for

from qxt_pandas.simulator import Faults, serve

MOBILES = [f"139{i:08d}" for i in range(40)]


def export(path: Path, rows: int = 40, **encode) -> Path:
    frame = pd.DataFrame({"mobile": (MOBILES * (rows // len(MOBILES) + 1))[:rows], "name": ["张三"] * rows})
    frame.to_csv(path, index=False, **encode)
    return path


def check(source: Path, output: Path, url: str, *more: object, **popen) -> subprocess.CompletedProcess:
    return qxt("check", source, "--column", "mobile", "--output", output, "--base-url", url, *more, **popen)


# -- item 3: everything knowable before paying is checked before paying ------------------


def test_an_output_under_a_file_costs_nothing(tmp_path, service):
    sim, url = service
    (tmp_path / "a-file").write_text("x")
    result = check(export(tmp_path / "in.csv"), tmp_path / "a-file" / "out.csv", url)
    assert result.returncode == 2 and "Cannot write the output" in result.stderr and len(sim.ledger) == 0
    assert "Nothing was asked or paid for" in result.stderr


def test_a_read_only_output_directory_costs_nothing(tmp_path, service):
    sim, url = service
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro"):
        result = check(export(tmp_path / "in.csv"), tmp_path / "ro" / "out.csv", url, "--checkpoint", tmp_path / "c")
    assert result.returncode == 2 and "Cannot write the output" in result.stderr and len(sim.ledger) == 0


def test_a_column_the_output_format_cannot_hold_costs_nothing(tmp_path, service):
    sim, url = service
    pq.write_table(pa.table({"mobile": MOBILES, "tags": [["a"]] * len(MOBILES)}), tmp_path / "in.parquet")
    result = check(tmp_path / "in.parquet", tmp_path / "out.csv", url)
    assert result.returncode == 2 and "'tags'" in result.stderr and len(sim.ledger) == 0
    assert check(tmp_path / "in.parquet", tmp_path / "out.parquet", url).returncode == 0  # Parquet holds lists


def test_a_duplicate_header_costs_nothing(tmp_path, service):
    sim, url = service
    (tmp_path / "in.csv").write_text("mobile,mobile\n" + "".join(f"{m},{m}\n" for m in MOBILES))
    result = check(tmp_path / "in.csv", tmp_path / "out.csv", url)
    assert result.returncode == 2 and "'mobile' more than once" in result.stderr and len(sim.ledger) == 0


def test_the_output_may_not_be_the_input(tmp_path, service):
    sim, url = service
    source = export(tmp_path / "in.csv")
    before = source.read_bytes()
    result = check(source, tmp_path / "." / "in.csv", url)
    assert result.returncode == 2 and "is the input file" in result.stderr
    assert source.read_bytes() == before and len(sim.ledger) == 0


# -- item 7: encodings, checked over the whole file -------------------------------------


def test_gbk_after_an_ascii_first_mib_is_read_as_gbk(tmp_path, service):
    _, url = service
    lines = "mobile,name\n" + f"{MOBILES[0]},{'x' * (1 << 20)}\n" + "".join(f"{m},张三\n" for m in MOBILES[1:])
    (tmp_path / "in.csv").write_bytes(lines.encode("gbk"))
    result = check(tmp_path / "in.csv", tmp_path / "out.parquet", url)
    assert result.returncode == 0, result.stderr
    assert pd.read_parquet(tmp_path / "out.parquet")["name"].iloc[1:].eq("张三").all()


def test_one_gbk_line_in_a_utf8_file_is_an_error_naming_the_line(tmp_path, service):
    sim, url = service
    body = b"mobile,name\n" + b"".join(f"{m},张三\n".encode() for m in MOBILES[:20])
    body += f"{MOBILES[20]},李四\n".encode("gbk") + b"".join(f"{m},张三\n".encode() for m in MOBILES[21:])
    (tmp_path / "in.csv").write_bytes(body)
    result = check(tmp_path / "in.csv", tmp_path / "out.csv", url)
    assert result.returncode == 2 and "line 22" in result.stderr and len(sim.ledger) == 0


def test_a_file_in_no_chinese_encoding_is_an_error_naming_the_line(tmp_path, service):
    sim, url = service
    (tmp_path / "in.csv").write_bytes(b"mobile,name\n13900000001,ok\n13900000002,\xff\xff\xff\n")
    result = check(tmp_path / "in.csv", tmp_path / "out.csv", url)
    assert result.returncode == 2 and "line 3" in result.stderr and len(sim.ledger) == 0
    named = check(tmp_path / "in.csv", tmp_path / "out.csv", url, "--encoding", "utf-8")
    assert named.returncode == 2 and "line 3" in named.stderr and len(sim.ledger) == 0


# -- the default checkpoint: a failed run resumes for free ------------------------------


def test_a_checkpoint_is_kept_beside_the_output_by_default(tmp_path, service):
    sim, url = service
    source = export(tmp_path / "in.csv")
    first = check(source, tmp_path / "out.csv", url)
    assert first.returncode == 0 and (tmp_path / "out.qxt").is_dir() and "answers kept in" in first.stderr
    paid = len(sim.ledger)
    assert check(source, tmp_path / "out.csv", url).returncode == 0 and len(sim.ledger) == paid
    assert check(source, tmp_path / "b.csv", url, "--no-checkpoint").returncode == 0
    assert not (tmp_path / "b.qxt").exists() and len(sim.ledger) == 2 * paid


def test_an_input_that_changes_while_it_is_checked_is_refused_and_resumes_for_free(tmp_path):
    sim = make_simulator(latency=0.05)
    source = export(tmp_path / "in.csv", rows=400)
    env = {**os.environ, "QXT_APIKEY": SECRET}
    with serve(sim) as url:
        child = subprocess.Popen([*QXT, "check", str(source), "--column", "mobile",
                                  "--output", str(tmp_path / "out.csv"), "--base-url", url, "--concurrency", "2"],
                                 env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 2 or child.poll() is not None)
        with open(source, "a") as f:
            f.write("13911112222,王五\n")  # the export is still being written
        err = child.communicate(timeout=60)[1]
        assert child.returncode == 2 and "changed" in err and "kept in" in err and not (tmp_path / "out.csv").exists()
        assert "it has 401 rows now, 400 when its numbers were read" in err  # what the file holds, not what was written
        paid = len(sim.ledger)
        again = check(source, tmp_path / "out.csv", url)
    assert again.returncode == 0 and len(sim.ledger) <= paid + 1 and sim.ledger.paid_twice() == {}


# -- items 9 and 10: interrupts while writing; unanswered numbers --------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_the_output_is_written_stops_at_once(tmp_path, service, sig):
    _, url = service
    rows = 1_500_000
    pd.DataFrame({"mobile": (MOBILES * (rows // len(MOBILES)))}).to_csv(tmp_path / "in.csv", index=False)
    env = {**os.environ, "QXT_APIKEY": SECRET}
    out = tmp_path / "out.parquet"
    child = subprocess.Popen([*QXT, "check", str(tmp_path / "in.csv"), "--column",
                              "mobile", "--output", str(out), "--base-url", url], env=env, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip

    def writing() -> bool:  # the partial output has grown past its header: pass 2 is running
        return any(p.stat().st_size > 50_000 for p in tmp_path.glob(".out.parquet.*.partial"))

    assert wait_for(lambda: writing() or child.poll() is not None, timeout=60) and child.poll() is None
    child.send_signal(sig)
    sent = time.monotonic()
    err = child.communicate(timeout=30)[1]
    assert child.returncode == 130 and time.monotonic() - sent < 2.0
    assert "No output was written" in err and not out.exists() and not list(tmp_path.glob(".*partial"))


def test_numbers_left_unanswered_exit_5_with_the_output_written(tmp_path, service):
    sim, url = service
    sim.faults = Faults(busy=1.0, endpoints=frozenset({"status"}))
    source = export(tmp_path / "in.csv")
    result = check(source, tmp_path / "out.csv", url, "--retries", "0", "--concurrency", "4")
    assert result.returncode == 5 and "40 numbers are unanswered" in result.stderr and (tmp_path / "out.csv").exists()
    gave_up = check(source, tmp_path / "out.csv", url, "--patience", "0.3")  # auto: busy is not a failure...
    assert gave_up.returncode == 5 and "refused every request" in pd.read_csv(tmp_path / "out.csv")["qxt_error"][0]
    sim.faults = Faults()
    budget = check(source, tmp_path / "out.csv", url, "--budget", "10")
    assert budget.returncode == 5 and "unanswered" in budget.stderr
    assert check(source, tmp_path / "out.csv", url).returncode == 0


# -- items 11, 12, 13, 15 ------------------------------------------------------------------


def test_partial_outputs_left_by_a_kill_are_removed(tmp_path, service):
    _, url = service
    (tmp_path / ".out.csv.deadbeef.partial").write_text("half")
    assert check(export(tmp_path / "in.csv"), tmp_path / "out.csv", url).returncode == 0
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--concurrency", "0"], "concurrency=0"),
        (["--rate", "nan"], "rate=nan"),
        (["--max-age", "-5"], "max_age"),
        (["--base-url", "ps.szqxt.com"], "http:// or https://"),
        (["--base-url", "http://127.0.0.1:99999"], "port"),
    ],
)
def test_bad_arguments_are_refused_before_the_input_is_read(tmp_path, args, says):
    result = qxt("check", tmp_path / "missing.csv", "--column", "mobile", "--output", tmp_path / "o.csv", *args)
    assert result.returncode == 2 and says in result.stderr and "no such file" not in result.stderr


def test_a_read_only_checkpoint_is_a_usage_error_that_says_so(tmp_path, service):
    sim, url = service
    (tmp_path / "cp").mkdir()
    source = export(tmp_path / "in.csv")
    assert check(source, tmp_path / "o.csv", url, "--checkpoint", tmp_path / "cp", "--budget", "0").returncode == 5
    with read_only(tmp_path / "cp"):
        result = check(source, tmp_path / "o.csv", url, "--checkpoint", tmp_path / "cp")
    assert result.returncode == 2 and "Running again will not help" in result.stderr and len(sim.ledger) == 0


def test_a_header_only_export_gives_an_output_with_the_result_columns(tmp_path, service):
    sim, url = service
    (tmp_path / "in.csv").write_text("id,mobile\n")
    result = check(tmp_path / "in.csv", tmp_path / "out.csv", url)
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 0 and list(out.columns)[:2] == ["id", "mobile"] and "Status" in out.columns
    assert sim.requests == 0


def test_a_workbook_with_several_sheets_says_which_it_read(tmp_path, service):
    _, url = service
    with pd.ExcelWriter(tmp_path / "in.xlsx") as book:
        pd.DataFrame({"note": ["x"]}).to_excel(book, sheet_name="说明", index=False)
        pd.DataFrame({"mobile": MOBILES[:5]}).to_excel(book, sheet_name="客户", index=False)
    first = check(tmp_path / "in.xlsx", tmp_path / "o.csv", url)
    assert first.returncode == 2 and "read sheet '说明' of 2" in first.stderr and "no column 'mobile'" in first.stderr
    chosen = check(tmp_path / "in.xlsx", tmp_path / "o.csv", url, "--sheet", "客户")
    assert chosen.returncode == 0 and len(pd.read_csv(tmp_path / "o.csv")) == 5
    assert check(tmp_path / "in.xlsx", tmp_path / "o.csv", url, "--sheet", "2").returncode == 0
    missing = check(tmp_path / "in.xlsx", tmp_path / "o.csv", url, "--sheet", "nope")
    assert missing.returncode == 2 and "'客户'" in missing.stderr
