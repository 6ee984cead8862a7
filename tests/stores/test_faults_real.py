"""Faults outside the process, as real processes meet them (issue 28): the command on a real PostgreSQL
while the database turns read-only, restarts its connections or is handed a NUL; a run suspended
past its lease while another takes its numbers over; SIGHUP; a closed progress pipe; ``qxt serve``
killed; a disk that fills. The simulator runs in this test process: its ledger is the truth of money.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import QXT, SECRET, rich, stored, wait_for
from test_faults import spilled, twice

from qxt_pandas.simulator import serve
from qxt_pandas.stores.postgres.store import COMMIT_EVERY


@pytest.fixture(autouse=True)
def _spill_here(tmp_path, monkeypatch):
    """This process looks for spills where the runs it starts put them."""
    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))


def record(fault: str, code: int | None, sim) -> None:
    """One row of the fault matrix (``benchmarks/fault_matrix.py`` sets $QXT_FAULT_MATRIX to collect them)."""
    if os.environ.get("QXT_FAULT_MATRIX"):
        with open(os.environ["QXT_FAULT_MATRIX"], "a") as f:
            f.write(json.dumps({"fault": fault, "exit": code, "paid_twice": twice(sim)}) + "\n")


def export(tmp_path: Path, count: int, prefix: str = "134") -> Path:
    path = tmp_path / "in.csv"
    pd.DataFrame({"m": [f"{prefix}{i:08d}" for i in range(count)]}).to_csv(path, index=False)
    return path


def start(tmp_path: Path, source: Path, store: str, url: str, *more: object, env: dict | None = None,
          stderr=subprocess.PIPE, out: str = "out.csv") -> subprocess.Popen:  # fmt: skip
    """``qxt check`` in a process of its own, its spill directory under ``tmp_path``."""
    environ = {**os.environ, "QXT_APIKEY": SECRET, "QXT_SPILL_DIR": str(tmp_path / "spill"), **(env or {})}
    args = ["check", source, "--column", "m", "--output", tmp_path / out, "--checkpoint", store, "--base-url", url,
            "--progress", "log", *more]  # fmt: skip
    return subprocess.Popen([*QXT, *map(str, args)], env=environ, stderr=stderr,
                            text=True)  # fmt: skip


def rerun(tmp_path: Path, source: Path, store: str, url: str) -> None:
    """The same check again, to the end: it moves any spill in and pays only for what was never asked."""
    again = start(tmp_path, source, store, url, "--progress", "off", out="again.csv")
    err = again.communicate(timeout=120)[1]
    assert again.returncode == 0, err


@contextlib.contextmanager
def admin(postgres: str):
    import psycopg

    with psycopg.connect(postgres.split("&schema=")[0], autocommit=True) as conn:
        conn.execute("set default_transaction_read_only = off")  # this session stays writable whatever the server says
        yield conn


# -- the database: read-only for a while, every connection terminated, a NUL it refuses ------------


def _read_only_until_spilled(postgres: str, tmp_path: Path) -> None:
    with admin(postgres) as conn:
        conn.execute("alter system set default_transaction_read_only = on")
        conn.execute("select pg_reload_conf()")
        try:  # held until the run has met it (its writer spilled a batch), then lifted
            assert wait_for(lambda: spilled(tmp_path / "spill"), timeout=60)
        finally:
            conn.execute("alter system reset default_transaction_read_only")
            conn.execute("select pg_reload_conf()")


def _terminate(postgres: str, tmp_path: Path) -> None:
    with admin(postgres) as conn:
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'qxt-pandas'")


@pytest.mark.parametrize("fault", ["read-only for a while", "every connection terminated", "a NUL in a field"])
def test_the_database_failing_mid_run_pays_nothing_twice_and_the_run_goes_through(postgres, tmp_path, fault):
    sim = rich(latency=0.01, shape="hostile" if "NUL" in fault else "json")
    source = export(tmp_path, 3000)
    with serve(sim) as url:
        child = start(tmp_path, source, postgres, url, "--concurrency", "16")
        assert wait_for(lambda: len(sim.ledger) >= 600, timeout=60)
        if fault == "read-only for a while":
            _read_only_until_spilled(postgres, tmp_path)
        elif fault == "every connection terminated":
            _terminate(postgres, tmp_path)
        err = child.communicate(timeout=120)[1]
        record(f"PostgreSQL: {fault}", child.returncode, sim)
        assert child.returncode == 0, err  # a passing fault is retried; a refused value is made storable
        assert "Traceback" not in err and "Exception in callback" not in err
        paid = set(sim.ledger.paid(SECRET))
        assert paid <= stored(postgres) and not spilled(tmp_path / "spill")
        rerun(tmp_path, source, postgres, url)
    assert twice(sim) == 0


# -- a run suspended past its lease while another takes its numbers over ----------------------------


def test_a_run_suspended_past_its_lease_never_asks_the_numbers_another_run_took_over(postgres, tmp_path):
    sim = rich(latency=0.02)
    source = export(tmp_path, 3000)
    lease = {"QXT_LEASE_SECONDS": "3"}  # every run on the store agrees on it
    with serve(sim) as url:
        first = start(tmp_path, source, postgres, url, "--concurrency", "4", "--timeout", "1", "--retries", "0",
                      env=lease, stderr=subprocess.DEVNULL)  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 300, timeout=60)
        first.send_signal(signal.SIGSTOP)  # a laptop lid, a paused VM
        try:
            at_stop = len(sim.ledger)
            second = start(tmp_path, source, postgres, url, "--concurrency", "4", env=lease, out="second.csv")
            # it waits for the first run's claim, finds its lease lapsed, and asks those numbers itself
            assert wait_for(lambda: len(sim.ledger) >= at_stop + 300, timeout=60)
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 0
        err = second.communicate(timeout=120)[1]
        record("PostgreSQL: a run suspended past its lease, another taking over", first.returncode, sim)
        assert second.returncode == 0, err
        rerun(tmp_path, source, postgres, url)
    # Before: 2,697-2,747 (every number it had left). Now at most what the first run held when it stopped:
    # its 4 requests in flight and the answers it had not yet committed (one COMMIT_EVERY, ~10 at ~200/s);
    # the second run could not see those (docs/store.md, "the window that remains").
    assert twice(sim) <= 4 + 2 * 200 * COMMIT_EVERY
    assert set(sim.ledger.paid(SECRET)) <= stored(postgres)


# -- signals and pipes ---------------------------------------------------------------------------


def test_sighup_drains_like_sigterm(tmp_path):
    sim = rich(latency=0.2)
    source, store = export(tmp_path, 1500), str(tmp_path / "c.qxt")
    with serve(sim) as url:
        child = start(tmp_path, source, store, url, "--concurrency", "16")
        assert wait_for(lambda: len(sim.ledger) >= 150, timeout=60)
        child.send_signal(signal.SIGHUP)  # the ssh session closed
        err = child.communicate(timeout=60)[1]
        assert child.returncode == 130 and "finishing" in err, err
        assert set(sim.ledger.paid(SECRET)) <= stored(store)
        rerun(tmp_path, source, store, url)
        record("SIGHUP", child.returncode, sim)
    assert twice(sim) == 0


def test_a_closed_progress_pipe_never_stops_the_run(tmp_path):
    sim = rich(latency=0.05)
    source, store = export(tmp_path, 1500), str(tmp_path / "c.qxt")
    with serve(sim) as url:
        child = start(tmp_path, source, store, url, "--concurrency", "8", "--progress", "json")
        assert child.stderr is not None and "ts" in json.loads(child.stderr.readline())
        child.stderr.close()  # the process reading it died
        record("the progress pipe closed", child.wait(timeout=120), sim)
        assert child.returncode == 0
        assert set(sim.ledger.paid(SECRET)) <= stored(store)
        written = pd.read_csv(tmp_path / "out.csv", dtype=str)
    assert written["qxt_code"].notna().all() and twice(sim) == 0


@pytest.mark.parametrize("stop", ["Ctrl-C at the terminal", "SIGTERM with a progress stream open"])
def test_a_stopped_server_stops_its_runs_once_and_within_30_s(tmp_path, stop):
    pytest.importorskip("starlette")
    from test_serve import upload

    if not Path("/proc/self/task").is_dir():
        pytest.skip("no /proc here to find the server's runs")
    sim = rich(latency=0.3)
    source, store = export(tmp_path, 2000), str(tmp_path / "c.qxt")
    env = {**os.environ, "QXT_APIKEY": SECRET, "QXT_SERVE_TOKEN": "t" * 32}
    with serve(sim) as url:
        # a terminal: the server leads a process group that the terminal's Ctrl-C reaches whole
        server = subprocess.Popen([*QXT, "serve", "--port", "0", "--base-url", url,
                                   "--data-dir", str(tmp_path / "serve"), "--checkpoint", store], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True)  # fmt: skip
        try:
            assert server.stdout is not None
            base = server.stdout.readline().strip().rstrip("/")  # (then "token: …", set here)
            import httpx

            with httpx.Client(base_url=base, headers={"Authorization": "Bearer " + "t" * 32}, timeout=30) as http:
                job = upload(http, source, column="m")["id"]
                assert http.post(f"/api/jobs/{job}/run").status_code == 200
                assert wait_for(lambda: sim.in_flight >= 8 and len(sim.ledger) >= 100, timeout=60)
                (run,) = _children(server.pid)
                if stop == "Ctrl-C at the terminal":
                    os.killpg(server.pid, signal.SIGINT)  # the whole foreground group, as a terminal does
                else:
                    streaming = threading.Event()
                    threading.Thread(target=_watch_events, args=(base, job, streaming), daemon=True).start()
                    assert streaming.wait(timeout=30)  # the page's progress stream is open
                    server.send_signal(signal.SIGTERM)
                started = time.monotonic()
                assert server.wait(timeout=60) == 0 and time.monotonic() - started < 30
                assert _ended(run)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
        assert set(sim.ledger.paid(SECRET)) <= stored(store)  # one SIGINT: it drained, nothing was abandoned
        rerun(tmp_path, source, store, url)
        record(f"qxt serve: {stop}", server.returncode, sim)
    assert twice(sim) == 0


def _watch_events(base: str, job: str, streaming: threading.Event) -> None:
    """Read the job's event stream, as the page does, until the server ends it."""
    import httpx

    headers = {"Authorization": "Bearer " + "t" * 32}
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.Client(base_url=base, timeout=None) as http,
        http.stream("GET", f"/api/jobs/{job}/events", headers=headers) as events,
    ):
        for line in events.iter_lines():
            if line.startswith("data:"):
                streaming.set()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie: ended, not yet reaped by whoever adopted it


def test_a_run_whose_server_is_killed_notices_and_keeps_what_it_paid_for(postgres, tmp_path):
    pytest.importorskip("starlette")
    from test_serve import console, upload

    if not Path("/proc/self/task").is_dir():
        pytest.skip("no /proc here to find the server's runs")
    sim = rich(latency=0.2)
    source = export(tmp_path, 2000)
    with serve(sim) as url, console(tmp_path, url, "--checkpoint", postgres) as server, server.client() as http:
        job = upload(http, source, column="m")["id"]
        assert http.post(f"/api/jobs/{job}/run").status_code == 200
        assert wait_for(lambda: len(sim.ledger) >= 150, timeout=60)
        (run,) = _children(server.proc.pid)
        server.proc.kill()  # SIGKILL: no chance to stop its runs
        assert wait_for(lambda: _ended(run), timeout=60)  # it noticed, drained and ended
        assert set(sim.ledger.paid(SECRET)) <= stored(postgres)
        rerun(tmp_path, source, postgres, url)
        record("qxt serve killed (SIGKILL) mid-run", None, sim)
    assert twice(sim) == 0


# -- a disk that fills -------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(where: Path, size: str):
    where.mkdir()
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip("mounting a small file system needs root on Linux")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_disk_that_fills_mid_run_stops_it_non_zero_and_the_next_run_moves_the_spill_in(tmp_path):
    sim = rich(latency=0.005)
    source = export(tmp_path, 3000)
    with small_disk(tmp_path / "disk", "96k") as disk, serve(sim) as url:
        store = str(disk / "c.qxt")
        child = start(tmp_path, source, store, url, "--concurrency", "8")
        err = child.communicate(timeout=120)[1]
        record("the disk holding the store fills", child.returncode, sim)
        assert child.returncode == 1 and "No space left on device" in err and "moved into the store" in err, err
        assert not (tmp_path / "out.csv").exists()  # no output from a run that could not store its answers
        paid, kept = set(sim.ledger.paid(SECRET)), spilled(tmp_path / "spill")
        assert kept and paid - kept  # it filled mid-run: some answers on the disk, the rest spilled
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # room again
        assert paid <= stored(store)  # (opening it moved the spill in)
        rerun(tmp_path, source, store, url)
    assert twice(sim) == 0
