"""ddf.qxt.check on a LocalCluster with two worker processes, against the simulator over loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import SECRET, make_simulator

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import qxt_pandas.dask  # noqa: E402, F401 (registers ddf.qxt)
from qxt_pandas.errors import ConfigurationError  # noqa: E402
from qxt_pandas.simulator import SimulatorTransport, serve  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def frame(n: int) -> pd.DataFrame:
    numbers = [f"138{i:08d}" for i in range(n)]
    # every number twice, in different partitions and spellings
    mobile = numbers + [f"+86 {m[:3]}-{m[3:7]}-{m[7:]}" for m in numbers] + ["无", "0755-26012345"]
    return pd.DataFrame({"id": range(len(mobile)), "mobile": mobile})


def expected(df: pd.DataFrame) -> pd.DataFrame:
    sim = make_simulator()
    sim.accounts[SECRET].balance = 10**6
    return df.qxt.check("mobile", apikey=SECRET, base_url="http://127.0.0.1", transport=SimulatorTransport(sim),
                        progress=False)  # fmt: skip


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        a.drop(columns="qxt_checked_at").astype(object), b.drop(columns="qxt_checked_at").astype(object)
    )


def test_the_result_equals_the_pandas_accessor_and_each_number_is_paid_once(client, tmp_path):
    df = frame(300)
    sim = make_simulator(latency=0.005)
    sim.accounts[SECRET].balance = 10**6
    with serve(sim) as url:
        lazy = dd.from_pandas(df, npartitions=6).qxt.check(
            "mobile", apikey=SECRET, base_url=url, checkpoint=tmp_path / "ck", concurrency=8
        )
        assert len(sim.ledger) == 0 and sim.requests == 0  # lazy: nothing asked before compute
        assert list(lazy.columns) == list(expected(df.head(0)).columns)
        out = lazy.compute()
    same(out, expected(df))
    paid = sim.ledger.paid(SECRET)
    assert max(paid.values()) == 1 and len(paid) == (out["qxt_code"] == 0).sum() // 2
    assert sim.max_in_flight <= 8  # the global concurrency, split between the tasks


def test_a_killed_worker_does_not_make_anyone_pay_twice(client, tmp_path):
    df = frame(600)
    sim = make_simulator(latency=0.03)
    sim.accounts[SECRET].balance = 10**6
    pids = list(client.run(os.getpid).values())
    with serve(sim) as url:
        lazy = dd.from_pandas(df, npartitions=4).qxt.check(
            "mobile", apikey=SECRET, base_url=url, checkpoint=tmp_path / "ck", concurrency=8, tasks=2
        )
        future = client.compute(lazy)
        deadline = time.monotonic() + 60
        while len(sim.ledger) < 60 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not future.done() and len(sim.ledger) < 600  # the kill lands mid-run
        os.kill(pids[0], signal.SIGKILL)  # Dask notices, and retries the task elsewhere
        out = future.result(timeout=120)
    same(out, expected(df))
    assert sum(n - 1 for n in sim.ledger.paid(SECRET).values()) <= 8  # only what was in flight


def test_a_checkpoint_is_required(tmp_path):
    with pytest.raises(ConfigurationError, match="checkpoint"):
        dd.from_pandas(frame(2), npartitions=1).qxt.check("mobile", apikey=SECRET)


def test_qxt_pandas_imports_without_dask():
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "import qxt_pandas\n"
        "try:\n    import qxt_pandas.dask\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "pip install 'qxt-pandas[dask]'" in result.stdout


def test_tasks_adapt_together_to_a_service_that_holds_less_than_their_shares(client, tmp_path):
    df = frame(400)
    sim = make_simulator(latency=0.02, capacity=6)
    sim.accounts[SECRET].balance = 10**6
    with serve(sim) as url:
        out = (
            dd.from_pandas(df, npartitions=4)
            .qxt.check("mobile", apikey=SECRET, base_url=url, checkpoint=tmp_path / "ck", tasks=2)
            .compute()
        )  # concurrency="auto": each task starts from its share of 128
    same(out, expected(df))  # every number answered, as pandas answers it
    assert sim.ledger.paid_twice() == {} and sim.max_in_flight == 6
    assert sim.refused <= 0.15 * sim.requests, (sim.refused, sim.requests)


def test_a_budget_smaller_than_the_tasks_is_still_spent_whole(client, tmp_path):
    sim = make_simulator()
    with serve(sim) as url:
        dd.from_pandas(frame(40), npartitions=4).qxt.check(
            "mobile", apikey=SECRET, base_url=url, checkpoint=tmp_path / "ck", budget=2, tasks=4
        ).compute()
    assert sim.ledger.paid(SECRET).total() == 2  # budget // tasks paid 0


def test_a_postgresql_store_serves_every_worker_and_pays_each_number_once(client, postgres):
    df = frame(200)
    sim = make_simulator(latency=0.005)
    sim.accounts[SECRET].balance = 10**6
    with serve(sim) as url:
        out = dd.from_pandas(df, npartitions=4).qxt.check("mobile", apikey=SECRET, base_url=url, checkpoint=postgres,
                                                          tasks=2).compute()  # fmt: skip
        again = dd.from_pandas(df, npartitions=4).qxt.check("mobile", apikey=SECRET, base_url=url,
                                                            checkpoint=postgres, tasks=2).compute()  # fmt: skip
    same(out, expected(df))
    same(again, out)
    assert max(sim.ledger.paid(SECRET).values()) == 1 and len(sim.ledger) == (out["qxt_code"] == 0).sum() // 2
