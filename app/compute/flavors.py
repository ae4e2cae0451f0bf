"""/flavors: list, detail, show, extra specs; create and delete for admins (written by the conductor)."""
from __future__ import annotations

import uuid as uuidlib

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute.body_schemas import FlavorUpdateSchema
from app.compute.request_body import body_schema, json_body
from app.compute.schemas import FlavorCreateSchema
from app.compute.views import flavor_detail, flavor_summary
from app.compute.visible_flavors import get_flavor, visible_to
from app.context import current
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import Flavor
from tasks.messaging import rpc

bp = Blueprint("flavors", __name__)
_SORT = {"flavorid": Flavor.flavorid, "name": Flavor.name, "memory_mb": Flavor.memory_mb, "vcpus": Flavor.vcpus,
         "root_gb": Flavor.root_gb, "id": Flavor.id, "created_at": Flavor.created_at}


def _int_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        number = int(value)
        if not -2 ** 63 <= number < 2 ** 63:  # what a database integer comparison can take
            raise ValueError
        return number
    except ValueError:
        raise bad_request(f"Invalid {name} filter [{value}]") from None


def _flavors() -> list[Flavor]:
    ctx = current()
    q = select(Flavor).where(Flavor.disabled.is_(False))
    is_public = request.args.get("is_public", "true").lower()
    if not ctx.is_admin or is_public in ("true", "t", "1", "yes", "y"):
        q = q.where(visible_to(ctx.project_id))
    elif is_public in ("false", "f", "0", "no", "n"):
        q = q.where(Flavor.is_public.is_(False))
    if (min_ram := _int_arg("minRam")) is not None:
        q = q.where(Flavor.memory_mb >= min_ram)
    if (min_disk := _int_arg("minDisk")) is not None:
        q = q.where(Flavor.root_gb >= min_disk)
    key = _SORT.get(request.args.get("sort_key", "flavorid"))
    if key is None:
        raise bad_request("Invalid sort key")
    q = q.order_by(key.desc() if request.args.get("sort_dir") == "desc" else key.asc())
    with read_session() as s:
        rows = list(s.scalars(q))
    marker = request.args.get("marker")
    if marker:
        ids = [f.flavorid for f in rows]
        if marker not in ids:
            raise bad_request(f"marker [{marker}] not found")
        rows = rows[ids.index(marker) + 1:]
    limit = _int_arg("limit")
    return rows[:limit] if limit is not None else rows


@bp.get("/flavors")
@enforce("authenticated", name="os_compute_api:flavors:index")
def list_flavors():
    v = api_version()
    return jsonify({"flavors": [flavor_summary(f, v) for f in _flavors()]})


@bp.get("/flavors/detail")
@enforce("authenticated", name="os_compute_api:flavors:index")
def list_flavors_detail():
    v = api_version()
    return jsonify({"flavors": [flavor_detail(f, v) for f in _flavors()]})


@bp.get("/flavors/<flavor_id>")
@enforce("authenticated", name="os_compute_api:flavors:show")
def show_flavor(flavor_id: str):
    return jsonify({"flavor": flavor_detail(get_flavor(flavor_id, current()), api_version())})


@bp.post("/flavors")
@enforce("admin_api", name="os_compute_api:os-flavor-manage:create")
@body_schema(FlavorCreateSchema, root="flavor")
def create_flavor(body: dict):
    if "description" in body and not api_version().matches("2.55"):
        raise bad_request("Additional properties are not allowed ('description' was unexpected)")
    flavorid = body.get("id") or str(uuidlib.uuid4())
    rpc.call("stratus.conductor.create_flavor", {
        "flavorid": flavorid, "name": body["name"], "memory_mb": body["ram"], "vcpus": body["vcpus"],
        "root_gb": body["disk"], "ephemeral_gb": body.get("OS_FLV_EXT_DATA_ephemeral", 0),
        "swap": body.get("swap", 0), "rxtx_factor": body.get("rxtx_factor", 1.0),
        "is_public": body.get("os_flavor_access_is_public", True), "description": body.get("description"),
        "extra_specs": {}})
    return jsonify({"flavor": flavor_detail(get_flavor(flavorid, current()), api_version())})


@bp.delete("/flavors/<flavor_id>")
@enforce("admin_api", name="os_compute_api:os-flavor-manage:delete")
def delete_flavor(flavor_id: str):
    rpc.call("stratus.conductor.delete_flavor", flavor_id)
    return "", 202


@bp.put("/flavors/<flavor_id>")
@enforce("admin_api", name="os_compute_api:os-flavor-manage:update")
@body_schema(FlavorUpdateSchema, root="flavor", since="2.55")
def update_flavor(_loaded: dict, flavor_id: str):
    if not api_version().matches("2.55"):
        raise not_found("The resource could not be found.")
    data = json_body()
    body = data.get("flavor")
    if set(data) != {"flavor"} or not isinstance(body, dict) or set(body) != {"description"}:
        raise bad_request("Invalid input for field/attribute flavor. Only 'description' may be updated and it is "
                          "required.")
    description = body["description"]
    if description is not None and (not isinstance(description, str) or len(description) > 65535):
        raise bad_request(f"Invalid input for field/attribute description. Value: {description!r}.")
    get_flavor(flavor_id, current())
    rpc.call("stratus.conductor.update_flavor_description", flavor_id, description)
    return jsonify({"flavor": flavor_detail(get_flavor(flavor_id, current()), api_version())})
