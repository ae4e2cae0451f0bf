"""Identity domains, read-only: only ``default`` exists."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.identity.bodies import collection, domain_body
from app.identity.inputs import bool_arg
from app.identity.service import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME
from app.policy import enforce
from core.errors import ApiError

bp = Blueprint("identity_domains", __name__)


@bp.get("/v3/domains")
@enforce("authenticated")
def list_domains():
    items = [domain_body()]
    name = request.args.get("name")
    if name is not None and name != DEFAULT_DOMAIN_NAME:
        items = []
    if bool_arg("enabled") is False:
        items = []
    return collection("domains", items, "/domains")


@bp.get("/v3/domains/<domain_id>")
@enforce("authenticated")
def show_domain(domain_id):
    if domain_id != DEFAULT_DOMAIN_ID:
        raise ApiError(404, f"Could not find domain: {domain_id}.")
    return jsonify({"domain": domain_body()})
