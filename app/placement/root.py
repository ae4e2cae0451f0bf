"""GET /placement/: Placement's version document (public, as Placement answers it without a token)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.placement.microversion import MAX_VERSION, MIN_VERSION
from app.policy import public

bp = Blueprint("placement_root", __name__)

# What Placement has up to MAX_VERSION and Stratus does not serve (docs/placement.md says why).
NOT_SUPPORTED = ["POST /reshaper (1.30): inventories and allocations of compute hosts are Stratus's own rows",
                 "allocation candidates spanning several providers (nested trees, sharing providers, "
                 "granular request groups): each candidate is one provider"]


@bp.get("/")
@bp.get("")
@public
def versions():
    return jsonify({"versions": [{
        "id": "v1.0", "min_version": f"{MIN_VERSION[0]}.{MIN_VERSION[1]}",
        "max_version": f"{MAX_VERSION[0]}.{MAX_VERSION[1]}", "status": "CURRENT",
        "links": [{"rel": "self", "href": ""}], "not_supported": NOT_SUPPORTED}]})
