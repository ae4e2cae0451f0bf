"""Version discovery of the Networking API: ``GET /networking/`` (public, as Neutron's root) lists v2.0;
``GET /networking/v2.0/`` lists its core resources; ``/v2.0/extensions`` what Stratus really implements.

Not listed, so clients and dashboards treat them as absent (as on a Neutron cloud without them): security groups,
routers, floating IPs, port security, port binding, DHCP agents, subnet pools."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.network import common
from app.policy import enforce, public
from core.errors import ApiError

bp = Blueprint("network_root", __name__)
_CORE = (("network", "networks"), ("subnet", "subnets"), ("port", "ports"))
# alias -> (name, description, updated): Neutron's own words for each extension.
EXTENSIONS: dict[str, tuple[str, str, str]] = {
    "external-net": ("Neutron external network", "Adds external network attribute to network resource.",
                     "2013-01-14T10:00:00-00:00"),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource.", "2015-03-25T10:00:00-00:00"),
    "project-id": ("project_id field enabled", "Extension that indicates that project_id field is enabled.",
                   "2016-09-09T09:09:09-09:09"),
    "standard-attr-description": ("standard-attr-description",
                                  "Extension to add descriptions to standard attributes",
                                  "2016-02-10T10:00:00-00:00"),
    "pagination": ("Pagination support", "Extension that indicates that pagination is enabled.",
                   "2016-06-12T00:00:00-00:00"),
    "sorting": ("Sorting support", "Extension that indicates that sorting is enabled.",
                "2016-06-12T00:00:00-00:00"),
    "filter-validation": ("Filter parameters validation", "Provides validation on filter parameters.",
                          "2018-03-21T10:00:00-00:00"),
    "quotas": ("Quota management support", "Expose functions for quotas management per project",
               "2012-07-29T10:00:00-00:00"),
    "quota_details": ("Quota details management support",
                      "Expose functions for quotas usage statistics per project", "2017-02-10T10:00:00-00:00"),
}


def _root_url() -> str:
    return request.url_root.rstrip("/") + common.PREFIX


@bp.get("/")
@bp.get("")
@public
def versions():
    return jsonify({"versions": [{"id": "v2.0", "status": "CURRENT",
                                  "links": [{"rel": "self", "href": f"{_root_url()}/v2.0/"}]}]})


@bp.get("/v2.0/")
@bp.get("/v2.0")
@enforce("authenticated")
def version():
    """The core resources of v2.0 (Neutron's V2Controller index)."""
    return jsonify({"resources": [{"name": name, "collection": collection,
                                   "links": [{"rel": "self", "href": f"{_root_url()}/v2.0/{collection}"}]}
                                  for name, collection in _CORE]})


def _extension(alias: str) -> dict:
    name, description, updated = EXTENSIONS[alias]
    return {"name": name, "alias": alias, "description": description, "updated": updated, "links": []}


@bp.get("/v2.0/extensions")
@enforce("authenticated")
def list_extensions():
    return jsonify({"extensions": [_extension(alias) for alias in EXTENSIONS]})


@bp.get("/v2.0/extensions/<alias>")
@enforce("authenticated")
def show_extension(alias: str):
    if alias not in EXTENSIONS:
        raise ApiError(404, f"Extension with alias {alias} does not exist", error_code="HTTPNotFound")
    return jsonify({"extension": _extension(alias)})
