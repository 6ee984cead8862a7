"""qxt_pandas.spark.check on a local Spark (local[2,4]: two threads, a failed task tried up to four times).

One session for the module (it takes seconds to start), against the simulator over loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pandas as pd
import pytest
from conftest import SECRET, make_simulator, wait_for

pyspark = pytest.importorskip("pyspark")

from pyspark.sql import SparkSession  # noqa: E402

from qxt_pandas import spark as qxt_spark  # noqa: E402
from qxt_pandas.errors import ColumnConflictError, ConfigurationError  # noqa: E402
from qxt_pandas.results import RESULT_COLUMNS  # noqa: E402
from qxt_pandas.simulator import Faults, SimulatorTransport, serve  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    session = (
        SparkSession.builder.master("local[2,4]")
        .appName("qxt-pandas-tests")
        .config("spark.pyspark.python", sys.executable)  # executors import the package under test
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


def messy(n: int) -> pd.DataFrame:
    """Every number in two rows and two spellings, plus junk."""
    numbers = [f"138{i:08d}" for i in range(n)]
    mobile = numbers + [f"+86 {m[:3]}-{m[3:7]}-{m[7:]}" for m in numbers] + ["无", "0755-26012345", None]
    return pd.DataFrame({"id": [str(i) for i in range(len(mobile))], "mobile": mobile})


def pandas_check(df: pd.DataFrame, **options) -> pd.DataFrame:
    sim = make_simulator()
    sim.accounts[SECRET].balance = 10**6
    return df.qxt.check("mobile", apikey=SECRET, base_url="http://127.0.0.1", transport=SimulatorTransport(sim),
                        progress=False, **options)  # fmt: skip


def as_objects(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns="qxt_checked_at").astype(object)
    return frame.where(frame.notna(), None).sort_values("id").reset_index(drop=True)


@pytest.fixture
def service():
    sim = make_simulator(latency=0.005)
    sim.accounts[SECRET].balance = 10**6
    with serve(sim) as url:
        yield sim, url


@pytest.mark.parametrize("queries", ["driver", "executors"])
def test_the_result_equals_the_pandas_check_row_for_row_and_each_number_is_paid_once(spark, service, tmp_path, queries):
    sim, url = service
    df = messy(150)
    sdf = spark.createDataFrame(df, "id string, mobile string").repartition(3)
    out = qxt_spark.check(sdf, "mobile", checkpoint=str(tmp_path / "ck"), apikey=SECRET, base_url=url,
                          queries=queries, progress=False)  # fmt: skip
    paid = len(sim.ledger)
    assert max(sim.ledger.paid(SECRET).values()) == 1
    got = out.toPandas()
    assert len(got) == len(df) and list(got.columns) == [*df.columns, *RESULT_COLUMNS]
    pd.testing.assert_frame_equal(as_objects(got), as_objects(pandas_check(df)), check_dtype=False)
    types = {f.name: f.dataType.simpleString() for f in out.schema.fields}
    assert (types["Status"], types["Is_MNP"], types["qxt_code"], types["qxt_checked_at"]) == (
        "string",
        "boolean",
        "smallint",
        "timestamp",
    )
    out.count()  # acting again on the lazy result asks nothing
    again = qxt_spark.check(sdf, "mobile", checkpoint=str(tmp_path / "ck"), apikey=SECRET, base_url=url,
                            queries=queries, prefix="new_", progress=False)  # fmt: skip
    assert "new_Status" in again.columns and len(sim.ledger) == paid  # a second run pays 0


def test_a_budget_run_then_a_resume_pays_each_number_once(spark, service, tmp_path):
    sim, url = service
    sdf = spark.createDataFrame(messy(100), "id string, mobile string")
    options = dict(checkpoint=str(tmp_path / "b"), apikey=SECRET, base_url=url, progress=False)
    first = qxt_spark.check(sdf, "mobile", budget=30, **options).toPandas()
    assert sim.ledger.paid(SECRET).total() == 30
    assert first["qxt_error"].astype(str).str.contains("budget reached").sum() > 0
    rest = qxt_spark.check(sdf, "mobile", **options).toPandas()
    assert rest["qxt_code"].isin([0, -4, -100]).all() and max(sim.ledger.paid(SECRET).values()) == 1


def test_a_budget_smaller_than_the_executor_tasks_is_still_spent_whole(spark, service, tmp_path):
    sim, url = service
    sdf = spark.createDataFrame(messy(40), "id string, mobile string")
    qxt_spark.check(sdf, "mobile", budget=3, tasks=4, queries="executors", checkpoint=str(tmp_path / "b"),
                    apikey=SECRET, base_url=url, progress=False).toPandas()  # fmt: skip
    assert sim.ledger.paid(SECRET).total() == 3  # budget // tasks paid 0


def test_a_number_failing_after_retries_shows_its_failure_text(spark, service, tmp_path):
    sim, url = service
    sim.faults = Faults(busy=1.0, endpoints=frozenset({"status"}))
    sdf = spark.createDataFrame(messy(3), "id string, mobile string")
    for queries in ("driver", "executors"):
        out = qxt_spark.check(
            sdf,
            "mobile",
            checkpoint=str(tmp_path / queries),
            apikey=SECRET,
            base_url=url,
            concurrency=2,
            retries=1,
            backoff=0,
            queries=queries,
            progress=False,
        ).toPandas()
        failed = out[out["qxt_code"] == -8]
        assert len(failed) == 6 and failed["qxt_error"].str.startswith("failed after 2 attempt(s): ServerBusy").all()


def test_a_query_task_killed_mid_run_is_retried_and_repays_at_most_what_was_in_flight(spark, tmp_path):
    sim = make_simulator(latency=0.03)
    sim.accounts[SECRET].balance = 10**6
    df = messy(400)
    sdf = spark.createDataFrame(df, "id string, mobile string")
    killed = []

    def kill_a_query_worker() -> None:  # SIGKILL the Python worker of a running query task
        if wait_for(lambda: len(sim.ledger) >= 60, timeout=60):
            for pid in _python_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(len(sim.ledger))

    with serve(sim) as url:
        threading.Thread(target=kill_a_query_worker, daemon=True).start()
        out = qxt_spark.check(sdf, "mobile", checkpoint=str(tmp_path / "k"), apikey=SECRET, base_url=url,
                              queries="executors", tasks=2, concurrency=8, progress=False).toPandas()  # fmt: skip
    assert killed and max(killed) < 390, "no query task was killed mid-run: the test proved nothing"
    pd.testing.assert_frame_equal(as_objects(out), as_objects(pandas_check(df)), check_dtype=False)
    assert sum(n - 1 for n in sim.ledger.paid(SECRET).values()) <= 8  # only what was in flight at the kill


def _python_workers() -> list[int]:
    """Spark's forked Python workers of this test process's JVM (pyspark.daemon children)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout.splitlines()
    daemons = {line.split()[0] for line in out if "pyspark.daemon" in line}
    return [int(line.split()[0]) for line in out if line.split()[1] in daemons]


def test_speculation_warns_and_usage_errors_are_clear(spark, tmp_path):
    sdf = spark.createDataFrame(messy(2), "id string, mobile string")
    with pytest.raises(KeyError, match="phone"):
        qxt_spark.check(sdf, "phone", checkpoint=str(tmp_path / "x"), apikey=SECRET)
    with pytest.raises(ValueError, match="queries="):
        qxt_spark.check(sdf, "mobile", checkpoint=str(tmp_path / "x"), apikey=SECRET, queries="everywhere")
    with pytest.raises(ConfigurationError, match="checkpoint"):
        qxt_spark.check(sdf, "mobile", checkpoint=None, apikey=SECRET)  # type: ignore[arg-type]
    clash = sdf.withColumnRenamed("id", "Status")
    with pytest.raises(ColumnConflictError, match="prefix="):
        qxt_spark.check(clash, "mobile", checkpoint=str(tmp_path / "x"), apikey=SECRET)


def test_speculation_is_called_out_and_a_worker_without_the_package_is_a_clear_error():
    class Conf:
        def __init__(self, value: str) -> None:
            self.value = value

        def get(self, key: str, default: str) -> str:
            return self.value

    class FakeSpark:
        def __init__(self, value: str) -> None:
            self.sparkContext = type("Ctx", (), {"getConf": lambda _self: Conf(value)})()

    with pytest.warns(RuntimeWarning, match="speculation"):
        qxt_spark._refuse_speculation(FakeSpark("true"), "executors")
    qxt_spark._refuse_speculation(FakeSpark("true"), "driver")  # no task queries: nothing to say

    def missing() -> None:
        raise RuntimeError("PythonException: ModuleNotFoundError: No module named 'qxt_pandas'")

    with pytest.raises(ConfigurationError, match=r"spark\.pyspark\.python"):
        qxt_spark._on_executors(missing)


def test_qxt_pandas_imports_without_pyspark():
    code = (
        "import sys; sys.modules['pyspark'] = None\nimport qxt_pandas\n"
        "try:\n    import qxt_pandas.spark\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "pip install 'qxt-pandas[spark]'" in result.stdout


def test_executors_share_a_postgresql_store_and_pay_each_number_once(spark, service, postgres):
    sim, url = service
    sdf = spark.createDataFrame(messy(60), "id string, mobile string")
    options = dict(checkpoint=postgres, apikey=SECRET, base_url=url, progress=False, queries="executors", tasks=3)
    first = qxt_spark.check(sdf, "mobile", **options).toPandas()
    paid = len(sim.ledger)
    again = qxt_spark.check(sdf, "mobile", **options).toPandas()
    assert paid > 0 and len(sim.ledger) == paid and max(sim.ledger.paid(SECRET).values()) == 1
    assert first["qxt_code"].notna().all() and again["Status"].tolist() == first["Status"].tolist()
