"""The methods a path answers, for the Allow header of OPTIONS and 405 answers: werkzeug's list, less the methods
another rule takes (PUT /v2.1/flavors/detail is /flavors/<flavor_id>'s update of a flavor named "detail") and the
methods of a Compute route newer than the request's microversion (it answers 404 there)."""
from __future__ import annotations

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from app.microversion import is_compute_path
from app.request_body import declared_body


def allowed_methods() -> set[str]:
    adapter = current_app.create_url_adapter(request)
    try:
        own = adapter.match(request.path, method="OPTIONS", return_rule=True)[0]
    except HTTPException:
        return set()
    methods = set()
    for method in adapter.allowed_methods(request.path):
        try:
            rule = adapter.match(request.path, method=method, return_rule=True)[0]
        except HTTPException:
            continue
        if rule is not own and rule.rule != own.rule:
            continue
        declared = declared_body(current_app.view_functions[rule.endpoint])
        version = g.get("api_version")
        if declared is not None and declared.since and is_compute_path(request.path) and version is not None \
                and not version.matches(declared.since):
            continue
        methods.add(method)
    return methods


def init_app(app: Flask) -> None:
    def options_response() -> Response:
        response = app.response_class()
        response.allow.update(allowed_methods() | {"OPTIONS"})
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]
