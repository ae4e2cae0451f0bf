"""Identity API version discovery: ``GET /identity`` (300, the versions) and ``GET /identity/v3``."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.identity.bodies import v3_url
from app.policy import public

bp = Blueprint("identity_versions", __name__)
V3_ID = "v3.14"
V3_UPDATED = "2020-04-07T00:00:00Z"


def _v3_doc() -> dict:
    return {"id": V3_ID, "status": "stable", "updated": V3_UPDATED,
            "links": [{"rel": "self", "href": v3_url("/")}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}


@bp.get("")
@bp.get("/")
@public
def versions():
    resp = jsonify({"versions": {"values": [_v3_doc()]}})
    resp.status_code = 300
    return resp


@bp.get("/v3")
@bp.get("/v3/")
@public
def version():
    return jsonify({"version": _v3_doc()})
