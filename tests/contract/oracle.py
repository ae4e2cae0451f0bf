"""Check recorded responses (app/response_log.py's JSON lines) against Nova's published response schemas.

The check is tempest's own ``RestClient.validate_response``: a 2xx/3xx status must be one the schema lists, the
body must validate (Draft 4, tempest's format checker: ``additionalProperties: false`` exactly where Nova's schema
says so), a schema without a body means no body, and a schema's response headers are checked (``Location``).
Error responses (4xx/5xx) are not validated here, as tempest does not. Identity and Image responses are recorded
but have no published schema to check against (tests/contract/compute_schemas.py says why).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable

import jsonschema
from tempest.lib.common import api_version_request
from tempest.lib.common.jsonschema_validator import FORMAT_CHECKER, JSONSCHEMA_VALIDATOR

from tests.contract import allowlist
from tests.contract.compute_schemas import (ENDPOINTS, NO_SCHEMA, NO_SCHEMA_ACTIONS, AdminPass, Amended, ByAction,
                                            Fixed, Ref, Select, Versioned, not_compute, version_tuple)


@dataclasses.dataclass(frozen=True)
class Violation:
    method: str
    rule: str
    action: str | None
    microversion: str | None
    status: int
    schema: str
    complaint: str

    def __str__(self) -> str:
        what = f"{self.method} {self.rule}" + (f" [{self.action}]" if self.action else "")
        return f"{what} @ {self.microversion or '-'} -> {self.status} ({self.schema}): {self.complaint}"


UNMAPPED_ROUTE = "route is in neither compute_schemas.ENDPOINTS nor NO_SCHEMA"


class Unmapped(Exception):
    """A compute response the mapping does not cover: a new route or action must be added to one list."""


def _module_for(client: type, microversion: str | None) -> object:
    """The module of ``client.schema_versions_info`` for ``microversion`` (tempest's get_schema, without a client
    instance or its process-wide COMPUTE_MICROVERSION)."""
    version = api_version_request.APIVersionRequest(microversion)
    for item in client.schema_versions_info:
        if version.is_null() and item["min"] is None:
            return item["schema"]
        if version.matches(api_version_request.APIVersionRequest(item["min"]),
                           api_version_request.APIVersionRequest(item["max"])):
            return item["schema"]
    raise Unmapped(f"{client.__name__} has no schema for microversion {microversion}")


def resolve(ref: Ref, record: dict) -> tuple[dict, str] | None:
    """The tempest schema dict governing ``record`` and its dotted name; None where none is published."""
    if isinstance(ref, ByAction):
        action = record.get("action")
        if action in NO_SCHEMA_ACTIONS:
            return None
        if action not in ref.actions:
            raise Unmapped(f"action {action!r} is in neither SERVER_ACTIONS nor NO_SCHEMA_ACTIONS")
        return resolve(ref.actions[action], record)
    if isinstance(ref, Select):
        chosen = ref.choose(record)
        return None if chosen is None else resolve(chosen, record)
    if isinstance(ref, AdminPass):
        body = record.get("body")
        server = body.get("server", body) if isinstance(body, dict) else {}
        has_pass = isinstance(server, dict) and "adminPass" in server
        return resolve(ref.with_pass if has_pass else ref.plain, record)
    if isinstance(ref, Amended):
        found = resolve(ref.ref, record)
        if found is None or version_tuple(record.get("microversion")) < version_tuple(ref.since):
            return found
        schema = copy.deepcopy(found[0])
        ref.patch(schema, record)
        return schema, f"{found[1]} (amended: {ref.why})"
    module = _module_for(ref.client, record.get("microversion")) if isinstance(ref, Versioned) else ref.module
    if not hasattr(module, ref.name):
        raise Unmapped(f"{module.__name__} has no {ref.name}")
    return getattr(module, ref.name), f"{module.__name__.removeprefix('tempest.lib.api_schema.response.')}." \
                                      f"{ref.name}"


def _errors(schema: dict, instance: object) -> list[str]:
    validator = JSONSCHEMA_VALIDATOR(schema, format_checker=FORMAT_CHECKER)
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{err.message} at {where}")
    return out


def check(record: dict) -> list[Violation]:
    """Every way ``record`` breaks its published schema (empty when it keeps it or none is published)."""
    method, rule, status = record["method"], record.get("rule"), record["status"]
    if rule is None or method in ("HEAD", "OPTIONS") or not_compute(rule) or not 200 <= status < 400:
        return []
    if (method, rule) in NO_SCHEMA:
        return []

    def violation(schema: str, complaint: str) -> Violation:
        return Violation(method, rule, record.get("action"), record.get("microversion"), status, schema, complaint)

    try:
        if (method, rule) not in ENDPOINTS:
            raise Unmapped(UNMAPPED_ROUTE)
        found = resolve(ENDPOINTS[(method, rule)], record)
    except Unmapped as exc:
        return [violation("?", str(exc))]
    if found is None:
        return []
    schema, name = found
    if status not in schema["status_code"]:
        return [violation(name, f"status {status} is not one of {schema['status_code']}")]
    problems = []
    body_schema = schema.get("response_body")
    if body_schema:
        if record.get("kind") != "application/json" or record.get("body") is None:
            problems.append(violation(name, f"a JSON body is expected, got {record.get('kind')}"))
        else:
            problems += [violation(name, e) for e in _errors(body_schema, record["body"])]
    elif record.get("kind") != "empty" and record.get("body") not in ({}, [], ""):  # tempest: `if body:`
        problems.append(violation(name, f"no body is expected, got {record.get('kind')}: "
                                        f"{json.dumps(record.get('body'))[:200]}"))
    header_schema = schema.get("response_header")
    if header_schema:
        headers = {"location": record["location"]} if record.get("location") else {}
        problems += [violation(name, f"header: {e}") for e in _errors(header_schema, headers)]
    return [p for p in problems if not allowlist.allowed(p)]


class ResponseLog:
    """Reads the recorder's file incrementally: each call to ``new_violations`` checks the lines since the last."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.checked = 0

    def new_records(self) -> Iterable[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line being written by another process waits for the next call
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]

    def new_violations(self) -> list[Violation]:
        out = []
        for record in self.new_records():
            self.checked += 1
            out += check(record)
        return out


def log_path_from_env() -> Path | None:
    from app.response_log import ENV
    value = os.environ.get(ENV)
    return Path(value) if value else None
