"""Test-only response recorder: with ``STRATUS_TEST_RESPONSE_LOG=<path>`` set, each response is appended to that
file as one JSON line (method, URL rule, negotiated microversion, status, body) for the test suite's contract
oracle (tests/contract/). Unset (production), nothing is registered. Request bodies are never recorded, only a
server/flavor/aggregate action's name; passwords, tokens and private keys are masked."""
from __future__ import annotations

import json
import os
import re
from typing import Any

from flask import Flask, Response, g, request

ENV = "STRATUS_TEST_RESPONSE_LOG"
_SECRET_KEYS = {"adminPass", "password", "private_key", "token"}
_TOKEN_IN_URL = re.compile(r"(token=)[^&#\s]+")


def init_app(app: Flask) -> None:
    path = os.environ.get(ENV)
    if path:
        app.after_request(lambda resp: _record(path, resp))


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return "***" if key in _SECRET_KEYS else _TOKEN_IN_URL.sub(r"\1***", value)
    return value


def _action_name(status: int) -> str | None:
    if not request.path.endswith("/action") or status >= 400:  # a success: the view has parsed the body
        return None
    body = request.get_json(silent=True)
    return next(iter(body), None) if isinstance(body, dict) and len(body) == 1 else None


def _record(log_path: str, resp: Response) -> Response:
    body: Any = None
    kind = "empty"
    if resp.is_streamed:
        kind = "streamed"
    elif resp.content_length or resp.get_data():
        kind = resp.mimetype or "unknown"
        if resp.is_json:
            body = resp.get_json(silent=True)
    rule, view_args, url_path = request.url_rule, request.view_args or {}, request.path
    for key in _SECRET_KEYS & view_args.keys():  # a console token in /os-console-auth-tokens/<token>
        url_path = url_path.replace(str(view_args[key]), "***")
    line = {
        "method": request.method, "rule": rule.rule if rule else None, "endpoint": request.endpoint,
        "path": url_path, "view_args": _mask(view_args), "action": _action_name(resp.status_code),
        "microversion": str(g.api_version) if "api_version" in g else None, "status": resp.status_code,
        "kind": kind, "body": _mask(body), "location": resp.headers.get("Location"),
    }
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, json.dumps(line).encode() + b"\n")  # one write: lines of parallel workers stay whole
    finally:
        os.close(fd)
    return resp
