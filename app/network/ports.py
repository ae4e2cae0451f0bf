"""/networking/v2.0/ports: one port per server NIC. A port *is* the server's fixed IP row (``fixed_ips``: its
``port_id``, address and MAC, written by the conductor with the server), not a second copy: it appears with the
server and goes with it. ``status`` follows the server (ACTIVE while its guest runs or is paused, else DOWN).

Ports are made by booting a server on the network; creating, changing or deleting one through this API is
a 409 Conflict for the caller Neutron's policy allows (a project member), 403 for a reader."""
from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from app.context import current
from app.network import common
from app.policy import enforce
from core import network
from core.db import plain_rows, read_session
from core.models import FixedIP, Instance, Network
from core.power_state import PowerState
from core.settings import get_settings

bp = Blueprint("network_ports", __name__)
_QUERY = (select(FixedIP.port_id, FixedIP.address, FixedIP.mac, FixedIP.network_id, Network.cidr, Instance.uuid,
                 Instance.project_id, Instance.availability_zone, Instance.power_state)
          .join(Instance, Instance.uuid == FixedIP.instance_uuid).join(Network, Network.id == FixedIP.network_id)
          .where(Instance.deleted == 0).order_by(FixedIP.id))
_UP = (PowerState.RUNNING, PowerState.PAUSED)  # the guest's tap device exists: Neutron's port is ACTIVE
_READ_ONLY = ("A port of Stratus is its server's address on the built-in network: it comes with the server "
              "(boot one with --network or --nic net-id=) and goes with it.")


def port_body(row) -> dict:
    return {"id": row.port_id, "name": "", "network_id": row.network_id, "tenant_id": row.project_id,
            "project_id": row.project_id, "mac_address": row.mac, "admin_state_up": True,
            "status": "ACTIVE" if row.power_state in _UP else "DOWN", "device_id": row.uuid,
            "device_owner": f"compute:{row.availability_zone or get_settings().availability_zone}",
            "fixed_ips": [{"subnet_id": network.subnet_id_of(row.network_id, row.cidr), "ip_address": row.address}],
            "description": ""}


def _fixed_ips_filter(values: list[str]) -> list[tuple[str, str]]:
    """``fixed_ips=ip_address=10.77.0.5`` / ``fixed_ips=subnet_id=<id>``: (key, value) pairs."""
    out = []
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or key not in ("ip_address", "subnet_id"):
            raise common.bad_request(f"Invalid input for operation: '{value}' is not a valid fixed_ips filter "
                                     f"(ip_address=<address> or subnet_id=<id>).")
        out.append((key, wanted))
    return out


def _has_fixed_ip(item: dict, values: list[str]) -> bool:
    # Neutron: a port matches when one of its fixed IPs has every (key, value) given
    pairs = _fixed_ips_filter(values)
    return any(all(ip.get(k) == v for k, v in pairs) for ip in item["fixed_ips"])


def _rows(**where) -> list:
    """The ports the caller may see (an admin: all; else its project's), narrowed in SQL by ``where``."""
    ctx = current()
    query = _QUERY
    if not common.can_see_all(ctx):
        query = query.where(Instance.project_id == ctx.project_id)
    columns = {"id": FixedIP.port_id, "device_id": Instance.uuid, "mac_address": FixedIP.mac,
               "network_id": FixedIP.network_id, "project_id": Instance.project_id,
               "tenant_id": Instance.project_id, "ip_address": FixedIP.address}
    for key, values in where.items():
        query = query.where(columns[key].in_(values))
    with read_session() as s:
        return plain_rows(s, query).all()


@bp.get("/v2.0/ports")
@enforce("project_reader_api", name="get_port", description="Get a port")
def list_ports():
    wanted = common.filters(common.ATTRIBUTES["ports"] + ("fixed_ips",))
    narrow = {k: v for k, v in wanted.items() if k in ("id", "device_id", "mac_address", "network_id",
                                                      "project_id", "tenant_id")}
    addresses = [v for k, v in _fixed_ips_filter(wanted.get("fixed_ips", [])) if k == "ip_address"]
    if addresses:
        narrow["ip_address"] = addresses
    items = [port_body(r) for r in _rows(**narrow)]
    return common.listing("ports", items, special={"fixed_ips": _has_fixed_ip})


def _port(port_id: str) -> dict:
    rows = _rows(id=[port_id])
    if not rows:
        raise common.not_found("Port", port_id)
    return port_body(rows[0])


@bp.get("/v2.0/ports/<port_id>")
@enforce("project_reader_api", name="get_port", description="Get a port")
def show_port(port_id: str):
    return common.show("port", _port(port_id))


@bp.post("/v2.0/ports")
@enforce("project_member_api", name="create_port", description="Create a port")
def create_port():
    raise common.unsupported(_READ_ONLY)


@bp.put("/v2.0/ports/<port_id>")
@enforce("project_member_api", name="update_port", description="Update a port")
def update_port(port_id: str):
    common.refuse_write("update_port", _port(port_id)["project_id"], _READ_ONLY)


@bp.delete("/v2.0/ports/<port_id>")
@enforce("project_member_api", name="delete_port", description="Delete a port")
def delete_port(port_id: str):
    common.refuse_write("delete_port", _port(port_id)["project_id"],
                        _READ_ONLY + " Delete the server to remove its port.")
