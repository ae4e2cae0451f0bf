"""/os-networks: the built-in network, in Nova's (deprecated, network-proxy) shape.

As in Nova, the proxy API is gone from microversion 2.36 (404); the openstack CLI resolves `--nic net-id=...`
through it at 2.1 when there is no Networking service in the catalog.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.context import current
from app.microversion import current as api_version
from app.policy import enforce
from core.errors import not_found
from core.network import NetworkInfo, builtin

bp = Blueprint("networks", __name__)

_FIELDS = ("id", "cidr", "netmask", "gateway", "broadcast", "dns1", "dns2", "cidr_v6", "gateway_v6", "label",
           "netmask_v6")
_ADMIN_FIELDS = ("created_at", "updated_at", "deleted_at", "deleted", "injected", "bridge", "vlan",
                 "vpn_public_address", "vpn_public_port", "vpn_private_address", "dhcp_start", "project_id", "host",
                 "bridge_interface", "multi_host", "priority", "rxtx_base", "mtu", "dhcp_server", "enable_dhcp",
                 "share_address")


def _view(net: NetworkInfo) -> dict:
    values = {"id": net.id, "cidr": net.cidr, "netmask": net.netmask, "gateway": net.gateway,
              "broadcast": net.broadcast, "label": net.name, "bridge": net.bridge, "deleted": False,
              "injected": False, "multi_host": False, "enable_dhcp": False, "share_address": False,
              "dhcp_server": None, "mtu": None}
    fields = _FIELDS + (_ADMIN_FIELDS if current().is_admin else ())
    return {f: values.get(f) for f in fields}


def _check_version() -> None:
    if api_version().matches("2.36"):
        raise not_found("The resource could not be found.")


@bp.get("/os-networks")
@enforce("project_reader_api")
def list_networks():
    _check_version()
    return jsonify({"networks": [_view(builtin())]})


@bp.get("/os-networks/<network_id>")
@enforce("project_reader_api")
def show_network(network_id: str):
    _check_version()
    net = builtin()
    if network_id != net.id:
        raise not_found(f"Network {network_id} could not be found.")
    return jsonify({"network": _view(net)})
