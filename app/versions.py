"""Version documents at / and /v2.1 (as Nova serves them) so clients negotiate microversions."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.microversion import MAX_VERSION, MIN_VERSION, fmt
from app.policy import public
from core.settings import get_settings

bp = Blueprint("versions", __name__)
_UPDATED = "2013-07-23T11:33:21Z"


def _version(vid: str, status: str, version: str, min_version: str) -> dict:
    base = get_settings().public_url.rstrip("/")
    return {"id": vid, "status": status, "version": version, "min_version": min_version, "updated": _UPDATED,
            "links": [{"rel": "self", "href": f"{base}/{vid.replace('v2.0', 'v2')}/"}]}


def _v21() -> dict:
    return _version("v2.1", "CURRENT", fmt(MAX_VERSION), fmt(MIN_VERSION))


def _v20() -> dict:
    return _version("v2.0", "SUPPORTED", "", "")


def _with_media(doc: dict) -> dict:
    doc = dict(doc)
    doc["links"] = doc["links"] + [{"rel": "describedby", "type": "text/html",
                                    "href": "https://docs.openstack.org/"}]
    doc["media-types"] = [{"base": "application/json",
                           "type": "application/vnd.openstack.compute+json;version=2.1"}]
    return doc


@bp.get("/")
@public
def root():
    return jsonify({"versions": [_v20(), _v21()]})


@bp.get("/v2.1")
@bp.get("/v2.1/")
@public
def v2_1():
    return jsonify({"version": _with_media(_v21())})


@bp.get("/v2")
@bp.get("/v2/")
@public
def v2():
    return jsonify({"version": _with_media(_v20())})
