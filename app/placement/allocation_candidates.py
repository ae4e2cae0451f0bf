"""GET /placement/allocation_candidates (1.10+): providers that can take the request on their own, with the
claim's and the scheduler's arithmetic ((total - reserved) * ratio - used). Each candidate is one provider:
granular groups (resources1=...), nested trees and sharing providers are not combined (docs/placement.md)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.placement import common
from app.placement.microversion import at_least, require
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_allocation_candidates", __name__)


def _params() -> dict:
    allowed = {"resources", "limit"} | ({"required"} if at_least("1.17") else set()) | (
        {"member_of"} if at_least("1.21") else set()) | ({"in_tree"} if at_least("1.31") else set()) | (
        {"group_policy"} if at_least("1.25") else set())
    extra = sorted(set(request.args) - allowed)
    if extra:
        raise common.bad_request(f"Invalid query string parameters: '{extra[0]}' was unexpected (granular request "
                                 f"groups are not supported)" if extra[0][-1:].isdigit() else
                                 f"Invalid query string parameters: '{extra[0]}' was unexpected")
    if "resources" not in request.args:
        raise common.bad_request("Invalid query string parameters: 'resources' is a required property")
    out = common.resource_filters()
    if "limit" in request.args:
        if not request.args["limit"].isdigit() or int(request.args["limit"]) < 1:
            raise common.bad_request("Invalid query string parameters: limit must be an integer >= 1")
        out["limit"] = int(request.args["limit"])
    if "in_tree" in request.args:
        out["in_tree"] = common.uuid_arg(request.args["in_tree"], "in_tree")
    return out


@bp.get("/allocation_candidates")
@common.rule("allocation_candidates:list", "List allocation candidates")
def list_candidates():
    require("1.10")
    params = _params()
    resources = params.pop("resources")
    with read_session() as s:
        for rc in resources:
            if not view.resource_class_exists(s, rc):
                raise common.bad_request(f"Invalid resource class in resources parameter: No such resource class "
                                         f"{rc}.")
        for t in sorted(params["traits"].names()) if "traits" in params else ():
            if not view.trait_exists(s, t):
                raise common.bad_request(f"No such trait(s): {t}")
        found = view.candidates(s, resources, with_traits=at_least("1.17"), **params)
    return jsonify(common.candidates_body(found, resources))
