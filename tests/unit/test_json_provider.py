"""The API's orjson provider gives the same JSON as Flask's default one, and falls back where orjson cannot."""
from __future__ import annotations

import datetime
import decimal
import json
import uuid

import pytest
from flask import Flask, jsonify

from app.json_provider import OrjsonProvider

BODY = {"servers": [{"id": str(uuid.uuid4()), "name": "vm-ü", "addresses": {"private": [{"addr": "10.0.0.3"}]},
                     "metadata": {"z": "1", "a": "2"}, "progress": 0, "locked": False, "fault": None,
                     "OS-EXT-STS:task_state": None, "size": 2 ** 40}]}


@pytest.fixture
def flask_app():
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    return app


@pytest.mark.parametrize("value", [
    BODY,
    {1: "non-str key"},  # orjson refuses; the default provider turns it into "1"
    {"big": 2 ** 70},  # beyond 64 bits
    {"when": datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc)},  # Flask's http_date
    {"amount": decimal.Decimal("1.5")},
])
def test_same_document_as_flask_default(flask_app, value):
    with flask_app.app_context():
        ours = jsonify(value)
    default = Flask(__name__)
    with default.app_context():
        theirs = jsonify(value)
    assert ours.mimetype == "application/json"
    assert json.loads(ours.get_data()) == json.loads(theirs.get_data())
    assert list(json.loads(ours.get_data())) == list(json.loads(theirs.get_data())), "key order changed"


def test_request_bodies_parse_as_before(flask_app):
    for raw in (b'{"server": {"name": "x", "n": 1.5}}', b'{"n": NaN}', b'{"big": 123456789012345678901234567890}'):
        assert repr(flask_app.json.loads(raw)) == repr(json.loads(raw))
    with pytest.raises(ValueError):
        flask_app.json.loads(b'{"unterminated": ')


def test_the_api_uses_it(stratus_env):
    from app import create_app
    assert isinstance(create_app().json, OrjsonProvider)


def test_json_columns_keep_integers_beyond_64_bits():
    from core.db import _json_loads
    assert _json_loads("[1180591620717411303424]") == [2**70]  # orjson alone reads a float
    assert _json_loads(b'{"a": 1}') == {"a": 1}
    assert _json_loads("NaN") != _json_loads("NaN")  # NaN, read by the standard decoder
