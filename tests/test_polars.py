"""The same check on Polars (issue 22): results equal the pandas accessor's, typed the Polars way."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from conftest import SECRET, make_simulator, wait_for
from test_numbers import CASES

import qxt_pandas
import qxt_pandas.polars
from qxt_pandas import errors as E
from qxt_pandas.pipeline import RESULT_COLUMNS
from qxt_pandas.simulator import serve

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "crm_export.csv"
NUMBERS = [f"139{i:08d}" for i in range(400)]


def rich(**knobs):
    sim = make_simulator(**knobs)
    sim.accounts[SECRET].balance = 100_000
    return sim


def options(url: str, **more) -> dict:
    return dict(apikey=SECRET, base_url=url, progress=False, **more)


def rows_of(frame: pd.DataFrame | pl.DataFrame) -> list[tuple]:
    """Every row as Python values: NA and null as None, times as epoch milliseconds."""

    def plain(v):
        if v is None or v is pd.NA or (isinstance(v, float) and v != v) or v is pd.NaT:
            return None
        if isinstance(v, pd.Timestamp | dt.datetime):
            return int(pd.Timestamp(v).timestamp() * 1000)
        return v.item() if hasattr(v, "item") else v

    if isinstance(frame, pl.DataFrame):
        return [tuple(plain(v) for v in row) for row in frame.iter_rows()]
    return [tuple(plain(v) for v in row) for row in frame.astype(object).itertuples(index=False)]


def test_the_sample_export_equals_the_pandas_accessor_row_for_row(store):
    sim = rich()
    export = pl.read_csv(SAMPLE, infer_schema=False)  # the same values on both sides ("N/A" stays text)
    with serve(sim) as url:
        pandas_out = export.to_pandas().qxt.check("mobile", checkpoint=store, **options(url))
        paid = len(sim.ledger)
        polars_out = export.qxt.check("mobile", checkpoint=store, **options(url))
    assert len(sim.ledger) == paid  # the second face found every answer in the same store
    assert polars_out.columns == list(pandas_out.columns)
    assert rows_of(polars_out) == rows_of(pandas_out)


def test_every_messy_spelling_equals_pandas_and_the_types_are_polars_types(tmp_path):
    raw = [raw for raw, _ in CASES if raw is None or isinstance(raw, str)]
    sim = rich()
    with serve(sim) as url:  # one store: the second face reads the answers the first paid for
        more = options(url, checkpoint=tmp_path / "c.qxt")
        pandas_out = pd.DataFrame({"m": raw}, dtype=object).qxt.check("m", **more)
        polars_out = pl.DataFrame({"m": raw}, schema={"m": pl.String}).qxt.check("m", **more)
    assert rows_of(polars_out) == rows_of(pandas_out)
    assert dict(polars_out.schema) == {
        "m": pl.String, "Status": pl.Categorical, "Area": pl.Categorical, "Is_MNP": pl.Boolean,
        "Init_isp": pl.Categorical, "Now_isp": pl.Categorical, "qxt_mobile": pl.String, "qxt_code": pl.Int16,
        "qxt_error": pl.Categorical, "qxt_checked_at": pl.Datetime("ms", "UTC"),
    }  # fmt: skip
    assert polars_out["qxt_code"].null_count() == pandas_out["qxt_code"].isna().sum()


def test_a_series_an_integer_column_and_an_empty_frame(loopback):
    out = pl.Series("m", ["13800138000", "无", None]).qxt.check(**options(loopback))
    assert out.columns == list(RESULT_COLUMNS) and out["qxt_code"].to_list()[1:] == [-100, -100]
    ints = pl.DataFrame({"m": [13800138000, None, 12]}).qxt.check("m", **options(loopback))
    assert ints["qxt_mobile"].to_list() == ["13800138000", None, None]
    empty = pl.DataFrame({"m": []}, schema={"m": pl.String}).qxt.check("m", **options(loopback))
    assert empty.height == 0 and empty.columns == ["m", *RESULT_COLUMNS]


def test_result_columns_already_there_are_refused_as_in_pandas_unless_prefixed(loopback):
    checked = pl.DataFrame({"m": NUMBERS[:3]}).qxt.check("m", **options(loopback))
    with pytest.raises(E.ColumnConflictError, match="prefix="):
        checked.qxt.check("m", **options(loopback))
    again = checked.qxt.check("m", prefix="new_", **options(loopback))
    assert again.columns[-len(RESULT_COLUMNS) :] == ["new_" + c for c in RESULT_COLUMNS]
    with pytest.raises(KeyError, match="no column 'x'"):
        checked.qxt.plan("x", **options(loopback))


def test_a_lazy_frame_is_refused_before_anything_is_asked(sim, loopback):
    lazy = pl.DataFrame({"m": NUMBERS[:3]}).lazy()
    for method in ("check", "plan", "split"):
        with pytest.raises(TypeError, match=r"collect\(\) first"):
            getattr(lazy.qxt, method)("m", **options(loopback))
    assert len(sim.ledger) == 0 and sim.requests == 0


def test_budget_then_resume_pays_each_number_once_and_split_groups_rows(store):
    sim = rich()
    frame = pl.DataFrame({"m": [*NUMBERS, "无"]})
    with serve(sim) as url:
        plan = frame.qxt.plan("m", checkpoint=store, **options(url))
        assert plan.to_query == len(NUMBERS) and plan.invalid == 1 and len(sim.ledger) == 0
        first = frame.qxt.check("m", checkpoint=store, budget=100, **options(url))
        assert sim.ledger.paid(SECRET).total() == 100 and first["qxt_code"].null_count() > 0
        second = frame.qxt.check("m", checkpoint=store, **options(url))
    assert sim.ledger.paid_twice() == {} and second["qxt_code"].null_count() == 0
    parts = second.qxt.split()
    assert sum(part.height for part in parts.values()) == frame.height and parts["invalid"].height == 1
    assert all(isinstance(part, pl.DataFrame) for part in parts.values())


def test_a_stopped_run_raises_with_polars_partial_results(loopback, sim):
    sim.accounts[SECRET].balance = 50  # budget above the balance: the run starts and the balance runs out
    with pytest.raises(E.InsufficientBalanceError) as caught:
        pl.DataFrame({"m": NUMBERS}).qxt.check("m", concurrency=2, budget=len(NUMBERS), **options(loopback))
    partial = caught.value.partial
    assert isinstance(partial, pl.DataFrame) and partial.height == len(NUMBERS)
    assert (partial["qxt_code"] == 0).sum() == 50 and ".partial" in str(caught.value)


def test_kill_9_then_resume_pays_at_most_what_was_in_flight(tmp_path):
    sim = rich(latency=0.05)
    numbers = [f"136{i:08d}" for i in range(1500)]
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import polars as pl, qxt_pandas.polars, sys
        pl.DataFrame({{"m": {numbers!r}}}).qxt.check("m", base_url=sys.argv[1], checkpoint={str(tmp_path / "cp.qxt")!r},
                                                   concurrency=16, progress=False)
    """)
    )
    with serve(sim) as url:
        child = subprocess.Popen([sys.executable, str(script), url], env={**os.environ, "QXT_APIKEY": SECRET},
                                 stderr=subprocess.DEVNULL)  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 300, timeout=60)
        child.send_signal(signal.SIGKILL)
        child.wait()
        out = pl.DataFrame({"m": numbers}).qxt.check("m", checkpoint=tmp_path / "cp.qxt", **options(url))
    assert out["qxt_code"].null_count() == 0
    assert sum(n - 1 for n in sim.ledger.paid(SECRET).values()) <= 16


def test_another_packages_qxt_namespace_is_not_replaced():
    code = textwrap.dedent("""
        import polars as pl
        @pl.api.register_dataframe_namespace("qxt")
        class Theirs:
            def __init__(self, df): pass
        try:
            import qxt_pandas.polars
        except ImportError as exc:
            print("refused:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused:" in done.stdout and "another package" in done.stdout, done.stdout + done.stderr


def test_importing_twice_is_harmless():
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # polars warns when a namespace is overridden: ours is left as it is
        importlib.reload(qxt_pandas.polars)
    assert type(pl.DataFrame({"m": ["x"]}).qxt).__name__ == "PolarsDataFrameNamespace"


def test_without_polars_the_import_says_which_extra_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["polars"] = None  # as if it were not installed
        try:
            import qxt_pandas.polars
        except ImportError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'qxt-pandas[polars]'" in done.stdout, done.stdout + done.stderr
