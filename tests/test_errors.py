"""The exception tree: every vendor code has a class that says what to do."""

from __future__ import annotations

import pickle

import pytest

import qxt_pandas
from qxt_pandas import errors as E


def test_the_table_covers_every_documented_code():
    assert set(E.VENDOR_CODES) == {1, -1, -2, -3, -4, -5, -8, -9}


@pytest.mark.parametrize(
    ("code", "kind"),
    [(1, "number"), (-2, "number"), (-3, "number"), (-4, "number"),
     (-1, "terminal"), (-5, "terminal"), (-9, "terminal"), (-8, "transient")],
)  # fmt: skip
def test_each_code_is_sorted_into_exactly_one_kind(code, kind):
    exc = E.error_for_code(code, "原因", mobile="13972565391")
    assert isinstance(exc, qxt_pandas.QxtError)
    assert (isinstance(exc, E.NumberError), exc.terminal, exc.retryable) == (
        kind == "number",
        kind == "terminal",
        kind == "transient",
    )
    assert (exc.code, exc.reason, exc.mobile) == (code, "原因", "13972565391")


@pytest.mark.parametrize(
    ("code", "advice"),
    [(-9, "allow-list"), (-5, "Top up"), (-1, "QXT_APIKEY")],
)
def test_terminal_errors_say_what_to_do(code, advice):
    exc = E.error_for_code(code, "原因")
    assert advice in str(exc) and "原因" in str(exc) and str(code) in str(exc)


def test_errors_survive_pickling_with_their_data():
    for exc in (
        E.error_for_code(-5, "余额不足", mobile="13800138000"),
        E.HttpStatusError("HTTP 502", status_code=502),
        E.MissingApiKeyError("No key."),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert (back.code, back.reason, back.mobile) == (exc.code, exc.reason, exc.mobile)
        assert back.retryable == exc.retryable


def test_every_error_class_is_exported_and_rooted_at_qxterror():
    for name in E.__all__:
        obj = getattr(qxt_pandas, name)
        if isinstance(obj, type):
            assert issubclass(obj, qxt_pandas.QxtError)
    assert set(qxt_pandas.__all__) >= set(E.__all__)
