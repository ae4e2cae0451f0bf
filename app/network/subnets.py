"""/networking/v2.0/subnets: the built-in network's one IPv4 subnet (its CIDR, gateway and the pool the conductor
allocates fixed IPs from). Guests get their address on the kernel command line or a config drive, not DHCP, so
``enable_dhcp`` is false. Writes as the network's (networks.py)."""
from __future__ import annotations

from flask import Blueprint

from app.network import common
from app.policy import enforce
from core.network import NetworkInfo, builtin

bp = Blueprint("network_subnets", __name__)
_CONFIGURED = ("The subnet of Stratus's built-in network is set by the configuration (network_cidr); it cannot be "
               "{} through the API.")


def subnet_body(net: NetworkInfo) -> dict:
    owner = common.network_owner()
    return {"id": net.subnet_id, "name": net.name, "network_id": net.id, "tenant_id": owner, "project_id": owner,
            "ip_version": 4, "cidr": net.cidr, "gateway_ip": net.gateway, "allocation_pools": net.allocation_pools(),
            "dns_nameservers": [], "host_routes": [], "enable_dhcp": False, "ipv6_ra_mode": None,
            "ipv6_address_mode": None, "subnetpool_id": None, "description": ""}


def _subnet(subnet_id: str) -> NetworkInfo:
    net = builtin()
    if subnet_id != net.subnet_id:
        raise common.not_found("Subnet", subnet_id)
    return net


@bp.get("/v2.0/subnets")
@enforce("project_reader_api", name="get_subnet", description="Get a subnet")
def list_subnets():
    return common.listing("subnets", [subnet_body(builtin())])


@bp.get("/v2.0/subnets/<subnet_id>")
@enforce("project_reader_api", name="get_subnet", description="Get a subnet")
def show_subnet(subnet_id: str):
    return common.show("subnet", subnet_body(_subnet(subnet_id)))


@bp.post("/v2.0/subnets")
@enforce("admin_api", name="create_subnet", description="Create a subnet")
def create_subnet():
    raise common.unsupported("Stratus's built-in network has one subnet, set by the configuration "
                                 "(network_cidr): no other subnet can be created.")


@bp.put("/v2.0/subnets/<subnet_id>")
@enforce("admin_api", name="update_subnet", description="Update a subnet")
def update_subnet(subnet_id: str):
    _subnet(subnet_id)
    common.refuse_write("update_subnet", common.network_owner(), _CONFIGURED.format("changed"))


@bp.delete("/v2.0/subnets/<subnet_id>")
@enforce("admin_api", name="delete_subnet", description="Delete a subnet")
def delete_subnet(subnet_id: str):
    _subnet(subnet_id)
    common.refuse_write("delete_subnet", common.network_owner(), _CONFIGURED.format("deleted"))
