"""/servers/{id}/diagnostics: what the server's hypervisor reports about it (admin; Nova's standard format from
2.48, the driver's flat keys before)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.compute.instances import get_instance
from app.context import current
from app.microversion import current as api_version
from app.policy import enforce
from core import states
from core.db import read_session
from core.errors import conflict
from core.routing import compute_queue
from tasks.messaging import rpc

bp = Blueprint("server_diagnostics", __name__)


def _legacy_diagnostics(d: dict) -> dict:
    """Before 2.48 Nova returns the driver's own flat keys; these are libvirt's."""
    out: dict = {f"cpu{c['id']}_time": c.get("time") for c in d.get("cpu_details", [])}
    out["memory"] = (d.get("memory_details") or {}).get("maximum", 0) * 1024
    for i, disk in enumerate(d.get("disk_details", [])):
        name = f"vd{chr(ord('a') + i)}"
        out.update({f"{name}_read": disk["read_bytes"], f"{name}_read_req": disk["read_requests"],
                    f"{name}_write": disk["write_bytes"], f"{name}_write_req": disk["write_requests"],
                    f"{name}_errors": disk["errors_count"]})
    for i, nic in enumerate(d.get("nic_details", [])):
        for key in ("rx_octets", "rx_errors", "rx_drop", "rx_packets", "tx_octets", "tx_errors", "tx_drop",
                    "tx_packets"):
            out[f"vnet{i}_{key.replace('_octets', '')}"] = nic[key]
    return out


@bp.get("/servers/<server_id>/diagnostics")
@enforce("admin_api")
def diagnostics(server_id: str):
    with read_session() as s:
        inst = get_instance(s, server_id, current())
    if not inst.host or inst.vm_state == states.BUILDING:
        raise conflict(f"Instance {inst.uuid} is not ready")
    result = rpc.call("stratus.compute.diagnostics", {"host": inst.host, "instance_uuid": inst.uuid},
                      queue=compute_queue(inst.host))
    return jsonify(result if api_version().matches("2.48") else _legacy_diagnostics(result))
