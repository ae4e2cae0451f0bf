"""/networking/v2.0/networks: the built-in flat network (core/network.py), shared with every project.

Its name, address range and id come from the configuration, so it is not created, renamed or deleted through the
API: those writes are admin-only (Neutron's policy answers others 403, or 404 for a network of another project),
and an admin gets a 409 Conflict saying why."""
from __future__ import annotations

from flask import Blueprint

from app.network import common
from app.policy import enforce
from core.network import NetworkInfo, builtin

bp = Blueprint("network_networks", __name__)
MTU = 1500  # the instance bridge's (tools/stratus-network makes it with the kernel's default)
_CONFIGURED = ("Stratus's network is its built-in flat network, set by the configuration (network_name, "
               "network_cidr); it cannot be {} through the API.")


def network_body(net: NetworkInfo) -> dict:
    owner = common.network_owner()
    return {"id": net.id, "name": net.name, "tenant_id": owner, "project_id": owner, "admin_state_up": True,
            "mtu": MTU, "status": "ACTIVE", "subnets": [net.subnet_id], "shared": True, "router:external": False,
            "description": ""}


def _network(network_id: str) -> NetworkInfo:
    net = builtin()
    if network_id != net.id:
        raise common.not_found("Network", network_id)
    return net


@bp.get("/v2.0/networks")
@enforce("project_reader_api", name="get_network", description="Get a network")
def list_networks():
    return common.listing("networks", [network_body(builtin())])


@bp.get("/v2.0/networks/<network_id>")
@enforce("project_reader_api", name="get_network", description="Get a network")
def show_network(network_id: str):
    return common.show("network", network_body(_network(network_id)))


@bp.post("/v2.0/networks")
@enforce("admin_api", name="create_network", description="Create a network")
def create_network():
    raise common.unsupported("Stratus has one network, its built-in flat network, set by the configuration "
                                 "(network_name, network_cidr): no other network can be created.")


@bp.put("/v2.0/networks/<network_id>")
@enforce("admin_api", name="update_network", description="Update a network")
def update_network(network_id: str):
    net = _network(network_id)
    common.refuse_write("update_network", common.network_owner(),
                        _CONFIGURED.format("changed") + f" ({net.name})")


@bp.delete("/v2.0/networks/<network_id>")
@enforce("admin_api", name="delete_network", description="Delete a network")
def delete_network(network_id: str):
    net = _network(network_id)
    common.refuse_write("delete_network", common.network_owner(),
                        _CONFIGURED.format("deleted") + f" ({net.name})")
