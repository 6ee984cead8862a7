"""Every option is checked once, in CheckOptions, before any request: a clear ValueError naming it."""

from __future__ import annotations

import math
import pickle
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from conftest import SECRET

import qxt_pandas
from qxt_pandas.options import CheckOptions, parse_age, with_options

BAD = [
    ("max_age", -5, "max_age"),
    ("max_age", float("nan"), "max_age"),
    ("max_age", math.inf, "max_age"),
    ("max_age", timedelta(days=-1), "max_age"),
    ("max_age", "soon", "max_age"),
    ("budget", -5, "budget"),
    ("budget", 2.5, "budget"),
    ("budget", True, "budget"),
    ("concurrency", 0, "concurrency"),
    ("concurrency", -1, "concurrency"),
    ("concurrency", 1.5, "concurrency"),
    ("rate", 0, "rate"),
    ("rate", float("nan"), "rate"),
    ("rate", -3, "rate"),
    ("timeout", -1, "timeout"),
    ("timeout", 0, "timeout"),
    ("timeout", math.inf, "timeout"),
    ("retries", -1, "retries"),
    ("backoff", -0.1, "backoff"),
    ("progress", "loud", "progress"),
    ("checkpoint", 42, "checkpoint"),
    ("base_url", "ps.szqxt.com", "base_url"),
    ("base_url", "http://127.0.0.1:99999", "port"),
    ("base_url", "ftp://ps.szqxt.com", "base_url"),
]


@pytest.mark.parametrize(("name", "value", "says"), BAD)
def test_a_bad_value_is_a_value_error_naming_the_option(name, value, says):
    with pytest.raises(ValueError, match=says):
        CheckOptions(**{name: value})


@pytest.mark.parametrize(("name", "value", "says"), BAD[:8])
def test_the_accessor_refuses_before_any_request(sim, name, value, says):
    from qxt_pandas.simulator import SimulatorTransport

    df = pd.DataFrame({"mobile": ["13972565391"]})
    with pytest.raises(ValueError, match=says):
        df.qxt.check("mobile", apikey=SECRET, transport=SimulatorTransport(sim), **{name: value})
    assert sim.requests == 0


def test_good_values_are_normalized():
    options = CheckOptions(apikey=f" {SECRET} ", max_age="90d", concurrency=np.int64(8), budget=0, rate=2)
    assert options.max_age == 90 * 86400 and options.budget == 0 and options.rate == 2.0
    assert type(options.concurrency) is int and options.concurrency == 8
    assert options.apikey.reveal() == SECRET and SECRET not in repr(options)
    assert CheckOptions(max_age=timedelta(hours=1)).max_age == 3600
    assert CheckOptions(progress=False).progress_style == "off"
    assert with_options(CheckOptions(concurrency=3), rate=1.5).concurrency == 3


def test_options_travel_to_workers_with_their_key():
    options = CheckOptions(apikey=SECRET, concurrency=4)
    copy = pickle.loads(pickle.dumps(options))
    assert copy.apikey.reveal() == SECRET and copy.concurrency == 4


@pytest.mark.parametrize(("text", "seconds"), [("0s", 0.0), ("1.5h", 5400.0), (" 2 w ", 1209600.0)])
def test_parse_age(text, seconds):
    assert parse_age(text) == seconds


def test_unknown_options_are_a_type_error():
    with pytest.raises(TypeError, match="concurency"):
        with_options(concurency=3)
    assert "CheckOptions" in qxt_pandas.__all__
