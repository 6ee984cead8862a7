"""Against the simulator over loopback: kill -9, Ctrl-C, faults, a balance running out."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import FENCED_KEY, SECRET, make_simulator, wait_for

import qxt_pandas  # noqa: F401
from qxt_pandas import errors as E
from qxt_pandas.simulator import Faults, SimulatorTransport, serve
from qxt_pandas.stores.directory.store import Checkpoint

CHILD = """
import sys
import pandas as pd
import qxt_pandas
url, checkpoint, n, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
df = pd.DataFrame({"mobile": [f"138{i:08d}" for i in range(n)]})
out = df.qxt.check("mobile", base_url=url, checkpoint=checkpoint, concurrency=16, progress=False, backoff=0.01)
out.to_parquet(output)
"""
CONCURRENCY = 16


def numbers(n: int) -> pd.DataFrame:
    return pd.DataFrame({"mobile": [f"138{i:08d}" for i in range(n)]})


def reference(n: int) -> pd.DataFrame:
    """An uninterrupted run on a fresh simulator (answers are deterministic)."""
    sim = make_simulator()
    return numbers(n).qxt.check(
        "mobile", apikey=SECRET, base_url="http://127.0.0.1", transport=SimulatorTransport(sim), progress=False
    )


def same_results(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        a.drop(columns="qxt_checked_at").astype(object), b.drop(columns="qxt_checked_at").astype(object)
    )


def test_kill_9_at_random_moments_then_a_run_to_the_end(tmp_path: Path):
    n, kills = 500, 3
    sim = make_simulator(latency=0.04)
    checkpoint, output = tmp_path / "k.qxt", tmp_path / "out.parquet"
    env = {**os.environ, "QXT_APIKEY": SECRET}  # the key travels by environment, never argv
    rng = random.Random(11)
    with serve(sim) as url:
        args = [sys.executable, "-c", CHILD, url, str(checkpoint), str(n), str(output)]
        for _ in range(kills):
            child = subprocess.Popen(args, env=env)
            target = len(sim.ledger) + rng.randint(20, 90)
            assert wait_for(lambda: len(sim.ledger) >= target or child.poll() is not None)  # noqa: B023
            child.kill()  # SIGKILL: no cleanup of any kind
            child.wait()
            assert not output.exists()
        assert subprocess.run(args, env=env, timeout=120).returncode == 0
    expected = reference(n)
    paid = sim.ledger.paid(SECRET)
    assert set(paid) == set(expected.loc[expected["qxt_code"] == 0, "mobile"])
    paid_again = sum(times - 1 for times in paid.values())
    assert paid_again <= kills * CONCURRENCY  # only what was in flight at each kill
    same_results(pd.read_parquet(output), expected)


def test_ctrl_c_stops_within_a_second_keeps_the_checkpoint_and_resumes(tmp_path: Path):
    n = 400
    sim = make_simulator(latency=0.03)
    checkpoint = tmp_path / "c.qxt"
    options = dict(apikey=SECRET, checkpoint=checkpoint, concurrency=CONCURRENCY, progress=False)
    with serve(sim) as url:
        sent = {}

        def interrupt() -> None:
            assert wait_for(lambda: len(sim.ledger) >= 40)
            sent["at"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C and a Jupyter kernel interrupt send

        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            numbers(n).qxt.check("mobile", base_url=url, **options)
        assert time.monotonic() - sent["at"] < 1.0
        stored = Checkpoint(checkpoint, service="127.0.0.1").answers().num_rows
        assert stored >= len(sim.ledger) - CONCURRENCY  # all but what was in flight
        out = numbers(n).qxt.check("mobile", base_url=url, **options)
    assert out["qxt_code"].notna().all()
    assert sum(t - 1 for t in sim.ledger.paid(SECRET).values()) <= CONCURRENCY
    same_results(out, reference(n))


def test_ten_percent_faults_of_every_kind(tmp_path: Path):
    n = 300
    sim = make_simulator(faults=Faults.mixed(0.10), seed=5)
    with serve(sim) as url:
        out = numbers(n).qxt.check(
            "mobile", apikey=SECRET, base_url=url, checkpoint=tmp_path / "f.qxt", concurrency=32,
            retries=8, backoff=0.01, timeout=0.5, progress=False,
        )  # fmt: skip
    assert sim.requests > n * 1.05  # faults happened
    failed = out["qxt_error"].astype(str).str.startswith("failed after")
    assert (out["qxt_code"].notna() | failed).all()  # every number: its answer, or its error after retries
    assert sim.ledger.paid_twice(SECRET) == {}  # no delivered answer paid for twice
    same_results(out[~failed], reference(n)[~failed])


def test_balance_exhausted_mid_run_over_loopback(tmp_path: Path):
    sim = make_simulator(latency=0.005)
    sim.accounts[SECRET].balance = 25
    options = dict(apikey=SECRET, checkpoint=tmp_path / "b.qxt", concurrency=8, progress=False)
    with serve(sim) as url:
        with pytest.raises(E.InsufficientBalanceError) as caught:
            numbers(100).qxt.check("mobile", base_url=url, budget=1000, **options)
        assert caught.value.answered >= 25 and caught.value.remaining > 0
        sim.accounts[SECRET].balance = 1000
        out = numbers(100).qxt.check("mobile", base_url=url, **options)
    assert out["qxt_code"].notna().all() and sim.ledger.paid_twice() == {}
    assert sim.ledger.paid(SECRET).total() == sum(1 for c in reference(100)["qxt_code"] if c == 0)


@pytest.mark.parametrize(("key", "cls"), [("BaD-kEy-0000000000000000000000x1", E.InvalidApiKeyError),
                                          (FENCED_KEY, E.IpNotAllowedError)])  # fmt: skip
def test_bad_key_and_ip_not_allowed_over_loopback(tmp_path: Path, key, cls, capsys):
    sim = make_simulator()
    with serve(sim) as url, pytest.raises(cls) as caught:
        numbers(50).qxt.check("mobile", apikey=key, base_url=url, checkpoint=tmp_path / "x.qxt")
    assert sim.requests == 1 and len(sim.ledger) == 0
    assert key not in str(caught.value) and key not in capsys.readouterr().err
