"""tasks.messaging.fast_json reads and writes what kombu's JSON does: the two read each other's text, value for value."""
from __future__ import annotations

import datetime as dt
import decimal
import math

import pytest
from hypothesis import given, settings, strategies as st
from kombu import serialization
from kombu.utils import json as kombu_json

from tasks.messaging import fast_json

_kombu_dumps, _kombu_loads = fast_json._kombu_dumps, fast_json._kombu_loads

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**80, max_value=2**80)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text() | st.binary(max_size=16)
           | st.datetimes() | st.datetimes(timezones=st.timezones()) | st.dates() | st.times()
           | st.decimals(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(values)
def test_each_reads_the_others_text(value):
    expected = _kombu_loads(_kombu_dumps(value))
    assert _kombu_loads(fast_json.dumps(value)) == expected
    assert fast_json.loads(_kombu_dumps(value)) == expected
    assert fast_json.loads(fast_json.dumps(value).encode()) == expected


def test_what_orjson_would_read_differently_goes_to_kombu():
    assert fast_json.loads(str(2**70)) == 2**70  # orjson alone: a float
    assert fast_json.loads(b'{"a": [9223372036854775807]}') == {"a": [2**63 - 1]}
    assert math.isnan(fast_json.loads("NaN"))  # not JSON; kombu's decoder reads it
    assert fast_json.loads(memoryview(b'{"__type__": "decimal", "__value__": "1.5"}')) == decimal.Decimal("1.5")
    assert fast_json.loads(bytearray(b"[1]")) == [1]
    assert fast_json.dumps({1: "x", None: 2}) == '{"1":"x","null":2}'
    assert fast_json.dumps(2**70) == str(2**70)
    assert fast_json.loads(fast_json.dumps({"a": "x\ud800y"})) == {"a": "x\ud800y"}  # a lone surrogate


def test_refusals_are_kombus():
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        fast_json.dumps({1, 2})


def test_installed_as_the_json_serializer():
    fast_json.install()
    content_type, encoding, payload = serialization.dumps({"at": dt.datetime(2026, 12, 3, 17, 0)}, "json")
    assert (content_type, encoding) == ("application/json", "utf-8")
    assert kombu_json.loads(payload) == {"at": dt.datetime(2026, 12, 3, 17, 0)}
    assert serialization.loads(payload, content_type, encoding) == {"at": dt.datetime(2026, 12, 3, 17, 0)}


def test_reads_text_of_a_str_subclass():
    class Text(str):
        pass
    assert fast_json.loads(Text('{"a": [1, 2]}')) == {"a": [1, 2]}
    assert fast_json.loads(bytearray(b'{"a": 1}')) == {"a": 1}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 \"a\u0663\ud800"), max_size=60))
def test_a_run_of_19_digits_is_found_as_the_regular_expression_finds_it(text):
    import re

    from core.json_digits import has_long_digit_run
    expected = re.search(r"[0-9]{19}", text) is not None
    assert has_long_digit_run(text) is expected
    assert has_long_digit_run(text.encode("utf-8", "surrogatepass")) is expected


def test_a_run_of_19_digits_and_no_shorter():
    from core.json_digits import has_long_digit_run
    assert has_long_digit_run("[1" + "0" * 18 + "]") and has_long_digit_run(b"x9999999999999999999")
    assert not has_long_digit_run("[" + "9" * 18 + ", " + "9" * 18 + "]")
    assert not has_long_digit_run("\u0663" * 40)  # not an ASCII digit: never part of a JSON number
