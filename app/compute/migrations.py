"""/os-migrations: the migrations of all instances, filtered and paged as Nova (2.23, 2.59, 2.66, 2.80);
/servers/{id}/migrations: a server's in-progress live migrations (2.23), force-complete (2.22) and abort (2.24,
2.65) of one (conductor side: tasks/conductor/live.py)."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select

from app.compute.body_schemas import MigrationActionSchema
from app.compute.instances import get_instance, instance_for_subresource
from app.compute.request_body import body_schema
from app.compute.views import base_url, compute_prefix, iso_usec
from app.context import current
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import Migration
from tasks.messaging import rpc

bp = Blueprint("migrations", __name__)
_FILTERS = {"host": None, "status": Migration.status, "instance_uuid": Migration.instance_uuid,
            "source_compute": Migration.source_compute, "migration_type": Migration.migration_type}


def migration_body(m: Migration) -> dict:
    v = api_version()
    body = {"id": m.id, "source_node": m.source_node, "dest_node": m.dest_node, "source_compute": m.source_compute,
            "dest_compute": m.dest_compute, "dest_host": m.dest_host, "status": m.status,
            "instance_uuid": m.instance_uuid, "old_instance_type_id": m.old_instance_type_id,
            "new_instance_type_id": m.new_instance_type_id, "created_at": iso_usec(m.created_at),
            "updated_at": iso_usec(m.updated_at)}
    if v.matches("2.23"):
        body["migration_type"] = m.migration_type
        if m.migration_type == "live-migration" and m.status in ("queued", "preparing", "running"):
            href = f"servers/{m.instance_uuid}/migrations/{m.id}"
            body["links"] = [{"rel": "self", "href": f"{base_url()}{compute_prefix()}/{href}"},
                             {"rel": "bookmark", "href": f"{base_url()}/{href}"}]
    if v.matches("2.59"):
        body["uuid"] = m.uuid
    if v.matches("2.80"):
        body["user_id"] = m.user_id
        body["project_id"] = m.project_id
    return body


def _time_arg(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid input for query parameters {name}. Value: {raw}.") from None
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def _query():
    v = api_version()
    q = select(Migration).where(Migration.deleted == 0, Migration.hidden.is_(False))
    for name, column in _FILTERS.items():
        value = request.args.get(name)
        if value is None:
            continue
        if name == "host":
            q = q.where((Migration.source_compute == value) | (Migration.dest_compute == value))
        else:
            q = q.where(column == value)
    if v.matches("2.59"):
        if (since := _time_arg("changes-since")) is not None:
            q = q.where(Migration.updated_at >= since)
        if v.matches("2.66") and (before := _time_arg("changes-before")) is not None:
            q = q.where(Migration.updated_at <= before)
    if v.matches("2.80"):
        for name in ("user_id", "project_id"):
            if request.args.get(name):
                q = q.where(getattr(Migration, name) == request.args[name])
    return q.order_by(Migration.created_at.desc(), Migration.id.desc())


@bp.get("/os-migrations")
@enforce("admin_api", name="os_compute_api:os-migrations:index", description="List migrations")
def list_migrations():
    paged = api_version().matches("2.59")
    limit = request.args.get("limit") if paged else None
    marker = request.args.get("marker") if paged else None
    if limit is not None and (not limit.isdigit()):
        raise bad_request(f"Invalid input for query parameters limit. Value: {limit}.")
    with read_session() as s:
        rows = list(s.scalars(_query()))
    if marker is not None:
        ids = [m.uuid for m in rows]
        if marker not in ids:
            raise bad_request(f"Marker {marker} could not be found.")
        rows = rows[ids.index(marker) + 1:]
    body: dict = {}
    if limit is not None:
        more = len(rows) > int(limit)
        rows = rows[:int(limit)]
        if more and rows:
            body["migrations_links"] = [{"rel": "next", "href": f"{base_url()}{compute_prefix()}/os-migrations"
                                                                f"?limit={limit}&marker={rows[-1].uuid}"}]
    return jsonify({"migrations": [migration_body(m) for m in rows], **body})


# --- /servers/{id}/migrations (2.23): the server's in-progress live migrations ------------------------------------

_IN_PROGRESS = ("queued", "preparing", "running", "post-migrating")


def _server_migration_body(m: Migration) -> dict:
    v = api_version()
    body = {"id": m.id, "server_uuid": m.instance_uuid, "source_compute": m.source_compute,
            "source_node": m.source_node, "dest_compute": m.dest_compute, "dest_node": m.dest_node,
            "dest_host": m.dest_host, "status": m.status, "created_at": iso_usec(m.created_at),
            "updated_at": iso_usec(m.updated_at),
            # Stratus drivers report no transfer progress; Nova shows null for such drivers too
            "memory_total_bytes": None, "memory_processed_bytes": None, "memory_remaining_bytes": None,
            "disk_total_bytes": None, "disk_processed_bytes": None, "disk_remaining_bytes": None}
    if v.matches("2.59"):
        body["uuid"] = m.uuid
    if v.matches("2.80"):
        body["user_id"], body["project_id"] = m.user_id, m.project_id
    return body


def _live_migrations(server_id: str):
    if not api_version().matches("2.23"):
        raise not_found("The resource could not be found.")
    with read_session() as s:
        inst = get_instance(s, server_id, current())
        return inst, list(s.scalars(select(Migration).where(
            Migration.instance_uuid == inst.uuid, Migration.migration_type == "live-migration",
            Migration.status.in_(_IN_PROGRESS), Migration.deleted == 0).order_by(Migration.id)))


@bp.get("/servers/<server_id>/migrations")
@enforce("admin_api", name="os_compute_api:servers:migrations:index",
         description="Lists in-progress live migrations for a given server")
def list_server_migrations(server_id: str):
    return jsonify({"migrations": [_server_migration_body(m) for m in _live_migrations(server_id)[1]]})


@bp.get("/servers/<server_id>/migrations/<migration_id>")
@enforce("admin_api", name="os_compute_api:servers:migrations:show",
         description="Show details for an in-progress live migration for a given server")
def show_server_migration(server_id: str, migration_id: str):
    inst, rows = _live_migrations(server_id)
    found = [m for m in rows if str(m.id) == migration_id]
    if not found:
        raise not_found(f"In-progress live migration {migration_id} is not found for server {inst.uuid}.")
    return jsonify({"migration": _server_migration_body(found[0])})


def _control_request(server_id: str, migration_id: str, since: str) -> dict:
    if not api_version().matches(since):
        raise not_found("The resource could not be found.")
    inst = instance_for_subresource(server_id, write=True)
    ctx = current()
    return {"instance_uuid": inst.uuid, "migration_id": migration_id, "request_id": g.request_id,
            "user_id": ctx.user_id, "project_id": ctx.project_id}


@bp.post("/servers/<server_id>/migrations/<migration_id>/action")
@enforce("admin_api", name="os_compute_api:servers:migrations:force_complete",
         description="Force an in-progress live migration for a given server to complete")
@body_schema(MigrationActionSchema, since="2.22")
def server_migration_action(_loaded: dict, server_id: str, migration_id: str):
    if not api_version().matches("2.22"):
        raise not_found("The resource could not be found.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or len(body) != 1:
        raise bad_request("Malformed request body")
    (name, args), = body.items()
    if name != "force_complete":
        raise bad_request(f"There is no such action: {name}")
    if args is not None:
        raise bad_request(f"Invalid input for field/attribute force_complete. Value: {args!r}. {args!r} is not of "
                          f"type 'null'")
    rpc.call("stratus.conductor.live_migration_force_complete", _control_request(server_id, migration_id, "2.22"))
    return Response(status=202)


@bp.delete("/servers/<server_id>/migrations/<migration_id>")
@enforce("admin_api", name="os_compute_api:servers:migrations:delete",
         description="Delete(Abort) an in-progress live migration")
def delete_server_migration(server_id: str, migration_id: str):
    req = _control_request(server_id, migration_id, "2.24")
    rpc.call("stratus.conductor.live_migration_abort", {**req, "abort_queued": api_version().matches("2.65")})
    return Response(status=202)
