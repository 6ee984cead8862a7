"""The wire format: what is sent, and how every kind of answer is read."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qxt_pandas import errors as E
from qxt_pandas.service._secret import Secret
from qxt_pandas.service.protocol import Balance, PhoneStatus, build_request, parse_balance, parse_status

KEY = "k" * 32
OK = {
    "code": 0,
    "reason": "Succ",
    "result": {
        "Mobile": "13972565391",
        "Status": "正常",
        "Area": "湖北-宜昌",
        "Is_MNP": "1",
        "Init_isp": "中国移动",
        "Now_isp": "中国电信",
    },
}


def body(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def test_post_puts_the_key_in_the_body_and_get_in_the_query():
    post = build_request("status", KEY, "POST", "13972565391")
    assert (post.method, post.path, post.params) == ("POST", "/ssPhone_Status", None)
    assert post.data == {"apikey": KEY, "mobile": "13972565391"}
    get = build_request("balance", KEY, "GET")
    assert (get.path, get.params, get.data) == ("/balance", {"apikey": KEY}, None)
    with pytest.raises(ValueError):
        build_request("status", KEY, "PUT", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_request("status", KEY, "POST")


def test_the_documented_status_answer():
    assert parse_status(200, body(OK)) == PhoneStatus("13972565391", "正常", "湖北-宜昌", True, "中国移动", "中国电信")


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("0", False), (1, True), (0, False), (True, True), ("false", False)]
)
def test_is_mnp_in_any_spelling(raw, expected):
    answer = {**OK, "result": {**OK["result"], "Is_MNP": raw}}
    assert parse_status(200, body(answer)).is_mnp is expected


def test_extra_fields_byte_order_mark_and_string_code_are_accepted():
    answer = {**OK, "code": "0", "extra": [1, 2], "result": {**OK["result"], "Province": "湖北"}}
    assert parse_status(200, b"\xef\xbb\xbf" + body(answer)).status == "正常"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("12048", 12048), ("-2047", -2047), (12048, 12048), (" 7 ", 7), ("12048.0", 12048)],
)
def test_balance_numbers_sent_as_strings(sent, expected):
    answer = {"code": 0, "reason": "Succ", "result": {"feeType": "后付费", "balance": sent}}
    assert parse_balance(200, body(answer)) == Balance("后付费", expected)


@pytest.mark.parametrize(("code", "cls"), [(c, cls) for c, (cls, _) in E.VENDOR_CODES.items()])
@pytest.mark.parametrize("as_string", [False, True])
def test_every_vendor_code_raises_its_class_with_code_and_reason(code, cls, as_string):
    raw = body({"code": str(code) if as_string else code, "reason": "原因"})
    with pytest.raises(cls) as caught:
        parse_status(200, raw, mobile="13972565391")
    assert (caught.value.code, caught.value.reason, caught.value.mobile) == (code, "原因", "13972565391")
    with pytest.raises(cls):
        parse_balance(200, raw)


def test_unknown_code_keeps_its_value():
    with pytest.raises(E.UnknownCodeError) as caught:
        parse_status(200, body({"code": -77, "reason": "新错误"}))
    assert caught.value.code == -77 and "新错误" in str(caught.value)
    assert not caught.value.retryable and not caught.value.terminal


@pytest.mark.parametrize(
    "raw",
    [
        b"<html><head><title>502 Bad Gateway</title></head></html>",
        body(OK)[:6],  # truncated before its code: nothing shows it was charged
        b"",
        "\u9519\u8bef".encode("gbk"),
    ],
)
def test_a_body_that_is_not_json_is_a_retryable_typed_error(raw):
    with pytest.raises(E.UnparsableResponseError) as caught:
        parse_status(200, raw)
    assert caught.value.retryable
    assert "not JSON" in str(caught.value)


def test_the_error_quotes_what_came_back_abridged():
    page = b"<html><title>502 Bad Gateway</title>" + b"x" * 5000 + b"</html>"
    with pytest.raises(E.UnparsableResponseError) as caught:
        parse_status(200, page)
    message = str(caught.value)
    assert "502 Bad Gateway" in message and len(message) < 400 and "bytes" in message


@pytest.mark.parametrize("missing", ["Mobile", "Status", "Area", "Is_MNP", "Init_isp", "Now_isp"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_a_paid_answer_with_a_gap_is_kept_with_none_there(missing, how):
    result = {k: v for k, v in OK["result"].items() if k != missing}
    if how == "empty":
        result[missing] = ""
    answer = parse_status(200, body({**OK, "result": result}), mobile="13972565391")
    fields = {"Mobile": "mobile", "Status": "status", "Area": "area", "Is_MNP": "is_mnp", "Init_isp": "init_isp",
              "Now_isp": "now_isp"}  # fmt: skip
    expected = "13972565391" if missing == "Mobile" else None  # the number asked stands in for Mobile
    assert getattr(answer, fields[missing]) == expected
    assert answer.status == (None if missing == "Status" else "正常")


@pytest.mark.parametrize("answer", [[1, 2], {"reason": "Succ"}, {"code": "x"}])
def test_json_in_the_wrong_shape(answer):
    with pytest.raises(E.UnexpectedResponseError):
        parse_status(200, body(answer))


@pytest.mark.parametrize(
    "answer",
    [{"code": 0, "reason": "Succ"}, {"code": 0, "result": "正常"}, {"code": 0, "result": {"balance": "9"}}],
)
def test_code_0_without_a_result_was_charged_and_is_kept_unreadable(answer):
    with pytest.raises(E.ChargedUnreadableError) as caught:
        parse_status(200, body(answer))
    assert not caught.value.retryable and caught.value.code == E.CHARGED_UNREADABLE
    with pytest.raises(E.UnexpectedResponseError):  # the balance is free: nothing to keep
        parse_balance(200, body(answer))


def test_balance_missing_field():
    with pytest.raises(E.UnexpectedResponseError, match="feeType"):
        parse_balance(200, body({"code": 0, "result": {"balance": "3"}}))
    with pytest.raises(E.UnexpectedResponseError, match="balance"):
        parse_balance(200, body({"code": 0, "result": {"feeType": "预付费", "balance": "lots"}}))


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (502, True), (503, True), (429, True), (404, False)])
def test_http_errors(status, retryable):
    with pytest.raises(E.HttpStatusError) as caught:
        parse_status(status, b"<html>nginx</html>")
    assert caught.value.status_code == status and caught.value.retryable is retryable
    assert f"HTTP {status}" in str(caught.value)


def test_a_body_echoing_the_key_is_redacted():
    with pytest.raises(E.UnparsableResponseError) as caught:
        parse_status(200, f"<html>bad key {KEY}</html>".encode(), secret=Secret(KEY))
    assert KEY not in str(caught.value) and "***" in str(caught.value)


@given(st.binary(max_size=300))
def test_any_bytes_give_an_answer_or_a_library_error(raw):
    with contextlib.suppress(E.QxtError):
        parse_status(200, raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {"code": st.one_of(st.integers(-10, 2), st.text(max_size=3))},
        optional={"reason": json_values, "result": json_values},
    )
)
def test_any_json_object_gives_an_answer_or_a_library_error(answer):
    for parse in (parse_status, parse_balance):
        with contextlib.suppress(E.QxtError):
            parse(200, body(answer))
