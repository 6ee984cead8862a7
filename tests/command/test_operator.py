"""What an unattended ETL run needs (issue 34): a log that beats, JSON to the last line, a wrong URL that
binds nothing, documented exit codes whenever the stop comes, another user's checkpoint refused before paying.

Real ``qxt`` processes against the simulator in this process (its ledger is what was paid).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import QXT, SAMPLE, SECRET, qxt, rich, stored, wait_for

from qxt_pandas.simulator import serve

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
BOOT = [sys.executable, "-c", "import sys, _qxt_boot; sys.exit(_qxt_boot.main())"]  # what the qxt script runs


def _numbers(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.csv"
    pd.DataFrame({"mobile": [f"1390000{i:04d}" for i in range(n)]}).to_csv(path, index=False)
    return path


def test_the_log_beats_with_timestamps_while_no_answer_lands(tmp_path):
    sim = rich(latency=3.0)  # every answer takes 3 s: before, not one line in that time
    with serve(sim) as url:
        done = qxt("check", _numbers(tmp_path, 4), "--column", "mobile", "--output", tmp_path / "o.csv",
                   "--base-url", url, "--progress", "log", env_extra={"QXT_LOG_EVERY": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    quiet = re.findall(rf"^{STAMP} QXT 0/4 numbers .*waiting: 4 in flight, the oldest for \d+ s", done.stderr, re.M)
    assert len(quiet) >= 2, done.stderr  # a line a second, saying what it waits for, before any answer


def test_progress_json_is_json_to_the_last_line_which_sums_the_run_up(tmp_path):
    sim = rich()
    with serve(sim) as url:
        done = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "o.csv", "--split",
                   "--base-url", url, "--progress", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line: no plain text left
    assert all(re.fullmatch(STAMP, line["ts"]) for line in lines)
    summary = lines[-1]["summary"]
    assert summary["exit"] == 0 and summary["rows"] == 3000 and summary["paid"] == len(sim.ledger)
    assert summary["unanswered"] == 0 and summary["from_store"] == 0 and summary["checkpoint"].endswith("o.qxt")
    assert summary["outputs"][0].endswith("o.csv") and len(summary["outputs"]) == 1 + 6
    assert all(Path(path).exists() for path in summary["outputs"])
    assert summary["held_back"] is None and summary["message"].startswith("wrote 3,000 rows to ")


def test_a_wrong_url_leaves_the_store_as_it_found_it_and_the_right_one_then_runs(store, tmp_path):
    source = _numbers(tmp_path, 20)
    wrong = qxt("check", source, "--column", "mobile", "--output", tmp_path / "o.csv", "--checkpoint", store,
                "--base-url", "http://127.0.0.1:1")  # fmt: skip
    assert wrong.returncode == 1 and "Nothing was paid for" in wrong.stderr and "kept in" not in wrong.stderr
    assert not stored(store) and not (tmp_path / "o.csv").exists()
    if "://" not in store:
        assert not Path(store).exists()  # nothing made, nothing bound to 127.0.0.1:1
    sim = rich()
    with serve(sim) as url:
        right = qxt("check", source, "--column", "mobile", "--output", tmp_path / "o.csv", "--checkpoint", store,
                    "--base-url", url)  # fmt: skip
    assert right.returncode == 0, right.stderr  # an Airflow retry with the right URL succeeds
    assert len(stored(store)) == 20 and sim.ledger.paid_twice() == {}


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler yet (its SigCgt mask), or has already ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc to see the handler in place")
def test_a_stop_while_the_command_starts_is_exit_130_and_says_nothing_was_paid(tmp_path):
    sim = rich()
    with serve(sim) as url:
        args = ["check", str(SAMPLE), "--column", "mobile", "--output", str(tmp_path / "o.csv"), "--base-url", url]
        child = subprocess.Popen([*BOOT, *args], env={**os.environ, "QXT_APIKEY": SECRET}, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
        assert wait_for(lambda: _catches_sigterm(child.pid), timeout=30)
        child.send_signal(signal.SIGTERM)  # an orchestrator's stop while pandas still imports
        err = child.communicate(timeout=60)[1]
    assert child.returncode == 130, err  # before: killed by the signal, 143, nothing said
    assert "nothing was read, written or paid for" in err or "interrupted" in err
    assert len(sim.ledger) == 0 or "interrupted" in err


def test_a_stop_right_after_the_output_is_in_place_tells_the_truth(tmp_path):
    sim = rich()
    with serve(sim) as url:
        out = str(tmp_path / "o.csv")
        child = subprocess.Popen([*BOOT, "check", str(SAMPLE), "--column", "mobile", "--output", out, "--base-url", url,
                                  "--progress", "off"], env={**os.environ, "QXT_APIKEY": SECRET},
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert child.stderr is not None
        first = child.stderr.readline()
        assert first.startswith("qxt: wrote 3,000 rows"), first
        child.send_signal(signal.SIGTERM)  # in the moments after "wrote", while the interpreter winds down
        err = first + child.communicate(timeout=60)[1]
    assert child.returncode in (0, 130), err  # never killed by the signal
    if child.returncode == 130:
        assert "was complete and is in place" in err
    assert len(pd.read_csv(tmp_path / "o.csv", dtype=str)) == 3000


def test_the_simulator_with_stdout_closed_runs_to_the_end(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "qxt_pandas.cli",
            "check",
            str(SAMPLE),
            "--column",
            "mobile",
            "--output",
            str(tmp_path / "o.csv"),
            "--simulate",
            "--progress",
            "off",
        ],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip  (a scheduler that closed stdout: >&-)
    assert done.returncode == 0, done.stderr  # before: exit 2, "Unable to configure formatter 'default'"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="runs a child as another user")
def test_another_users_checkpoint_is_exit_2_before_anything_is_paid():
    tmp_path = Path(tempfile.mkdtemp(prefix="qxt-other-user-"))  # (pytest's own tmp dirs are root's alone: 0700)
    tmp_path.chmod(0o777)
    source = _numbers(tmp_path, 30)
    source.chmod(0o644)
    theirs = tmp_path / "theirs.qxt"
    theirs.mkdir(mode=0o755)  # made by root: nobody may read it, not write it
    sim = rich()
    with serve(sim) as url:
        child = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                                "qxt_pandas.cli", "check", str(source), "--column", "mobile", "--output",
                                str(tmp_path / "o.csv"), "--checkpoint", str(theirs), "--base-url", url],
                               env={**os.environ, "QXT_APIKEY": SECRET, "HOME": str(tmp_path)}, capture_output=True,
                               text=True, timeout=120)  # fmt: skip
    assert child.returncode == 2, child.stderr  # before: exit 1, "Run again to retry"
    assert "Cannot write to the checkpoint" in child.stderr and "Running again will not help" in child.stderr
    assert len(sim.ledger) == 0
    shutil.rmtree(tmp_path)


def test_the_output_and_its_split_files_change_as_one_set(tmp_path):
    """An outcome gone in the second run leaves no old split file beside the new output; OUT.files.json (written
    last) lists the run's files; a file of the user's and other runs' live partial files are not touched."""
    sim = rich()
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    pd.DataFrame({"mobile": ["13900000001", "13900000002", "not a number"]}).to_csv(first, index=False)
    pd.DataFrame({"mobile": ["13900000001", "13900000002"]}).to_csv(second, index=False)
    mine = tmp_path / "o.backup.csv"
    mine.write_text("keep me\n")
    stale = tmp_path / ".other.csv.0123abcd.partial"  # a killed run's, of another output
    stale.write_bytes(b"x" * 100)
    odd = tmp_path / ".not-ours.partial"
    odd.write_bytes(b"y")
    with serve(sim) as url:
        for source in (first, second):
            done = qxt("check", source, "--column", "mobile", "--output", tmp_path / "o.csv", "--split",
                       "--base-url", url)  # fmt: skip
            assert done.returncode == 0, done.stderr
            listed = json.loads((tmp_path / "o.files.json").read_text(encoding="utf-8"))
            assert listed["output"] == "o.csv" and all((tmp_path / name).exists() for name in listed["split"].values())
            if source == first:
                assert "invalid" in listed["split"] and (tmp_path / "o.invalid.csv").exists()
                assert not stale.exists() and odd.exists()  # cleaned at the next start in the folder, ours only
    assert "invalid" not in listed["split"] and not (tmp_path / "o.invalid.csv").exists()  # the old one is gone
    assert mine.read_text() == "keep me\n"
    with serve(sim) as url:
        plain = qxt("check", second, "--column", "mobile", "--output", tmp_path / "o.csv", "--base-url", url)
    assert plain.returncode == 0, plain.stderr  # no --split now: no split file of the last run beside the output
    assert not (tmp_path / "o.files.json").exists() and not list(tmp_path.glob("o.正常.csv"))


def test_a_run_that_gave_up_on_another_runs_claims_does_not_replace_the_output(tmp_path):
    import asyncio

    from qxt_pandas.stores import open_store

    sim = rich()
    source = _numbers(tmp_path, 40)
    store = tmp_path / "c.qxt"
    with serve(sim) as url:
        earlier = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "o.csv", "--checkpoint", store,
                      "--base-url", url)  # fmt: skip
        assert earlier.returncode == 0
        before = (tmp_path / "o.csv").read_bytes()
        other = open_store(store, service="127.0.0.1")
        claim = asyncio.run(other.claim([f"1390000{i:04d}" for i in range(10)], None))  # another run asks 10
        try:
            done = qxt("check", source, "--column", "mobile", "--output", tmp_path / "o.csv", "--checkpoint", store,
                       "--base-url", url, "--patience", "1", "--progress", "json")  # fmt: skip
        finally:
            claim.release()
            other.close()
    assert done.returncode == 5, done.stderr
    assert (tmp_path / "o.csv").read_bytes() == before  # a file sensor on o.csv sees nothing new
    aside = pd.read_csv(tmp_path / "o.unfinished.csv", dtype=str)
    assert len(aside) == 40 and aside["qxt_code"].isna().sum() == 10
    summary = json.loads(done.stderr.splitlines()[-1])["summary"]  # what a scheduler reads: why, and where
    assert summary["exit"] == 5 and summary["held_back"].endswith("o.csv") and summary["unanswered"] == 10
    assert summary["outputs"][0].endswith("o.unfinished.csv")
    assert "o.unfinished.csv, not to" in summary["message"] and "was left as it was" in summary["message"]


def test_a_vendor_that_goes_away_ends_the_run_after_patience_naming_the_refused_connections(tmp_path):
    sim = rich(latency=0.02)
    source = _numbers(tmp_path, 3000)
    with serve(sim) as url:
        child = subprocess.Popen([*QXT, "check", str(source), "--column", "mobile",
                                  "--output", str(tmp_path / "o.csv"), "--base-url", url, "--progress", "log",
                                  "--patience", "3", "--concurrency", "8", "--retries", "1"],
                                 env={**os.environ, "QXT_APIKEY": SECRET, "QXT_LOG_EVERY": "1"},
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 100, timeout=60)
    # the vendor is gone: every connection refused (before: ~300 s at 1 request in flight, not one line naming it)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == 5, err
    assert re.search(rf"^{STAMP} QXT .*since the last line [\d,]+ refused connections", err, re.M), err
    reasons = pd.read_csv(tmp_path / "o.csv", dtype=str)["qxt_error"].dropna()
    assert reasons.str.contains(r"refused every request \([^)]*refused connections[^)]*\) for 3 s").any(), reasons


def test_a_stop_while_the_files_are_put_in_place_is_told_after_the_last_rename(tmp_path, monkeypatch):
    """Issue 34: a Ctrl-C or SIGTERM between the split files' renames and the output's left new split files
    beside the old output (or the reverse), and a message that said otherwise."""
    import pyarrow as pa

    from qxt_pandas.command import outputs

    seen = []
    replace = os.replace

    def renamed(src, dst):  # the stop arrives right after the set's first rename
        replace(src, dst)
        seen.append(Path(dst).name)
        if len(seen) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    table = pa.table({"m": ["13900000001", "13900000002"], "qxt_code": pa.array([0, -4], pa.int16()),
                      "Status": ["正常", None]})  # fmt: skip
    main = outputs.AtomicWriter(tmp_path / "o.csv")
    main.open(table.schema)
    parts = outputs.SplitWriter(main, table.schema)
    main.write(table)
    parts.write(table)
    monkeypatch.setattr(outputs.os, "replace", renamed)
    with pytest.raises(KeyboardInterrupt):
        outputs.publish(main, parts)
    assert seen == ["o.正常.csv", "o.unknown.csv", "o.csv", "o.files.json"]  # all in place before the stop is told
    assert main.committed and (tmp_path / "o.files.json").exists()


def test_a_manifest_the_disk_cannot_take_fails_the_run_and_says_the_files_are_in_place(tmp_path, monkeypatch, capsys):
    """The last write of a run (``OUT.files.json``) fails (a full disk): the answers are stored, the output and
    its split files are in place, and the run says so with a non-zero exit instead of claiming success."""
    import errno

    from qxt_pandas import cli
    from qxt_pandas.command import outputs

    write = outputs.write_atomically

    def full(path, data, **kw):
        if path.name.endswith(outputs.MANIFEST):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write(path, data, **kw)

    monkeypatch.setattr(outputs, "write_atomically", full)
    monkeypatch.setenv("QXT_APIKEY", SECRET)
    sim = rich()
    with serve(sim) as url:
        code = cli.main(["check", str(SAMPLE), "--column", "mobile", "--output", str(tmp_path / "o.csv"), "--split",
                         "--base-url", url, "--progress", "off"])  # fmt: skip
    said = capsys.readouterr().err
    assert code == 1 and "No space left on device" in said and "was complete and is in place" in said
    assert len(pd.read_csv(tmp_path / "o.csv", dtype=str)) == 3000 and len(list(tmp_path.glob("o.*.csv"))) >= 2
    assert stored(tmp_path / "o.qxt") >= set(sim.ledger.paid(SECRET))  # every answer paid for is kept
