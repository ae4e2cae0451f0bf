"""/servers: create, list, list detail, show, update, delete, and the action route (its handlers are in
app/compute/actions.py). The shared lookups are in app/compute/instances.py, the bodies in server_bodies.py, and
the create's boot request is built by app/compute/boot_request.py."""
from __future__ import annotations

import re
from collections import namedtuple

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.compute import boot_request, instance_tags, server_filters
from app.compute.actions import ACTIONS, NOVA_NETWORK_ACTIONS
from app.compute.instances import get_instance, start_action
from app.compute.paging import MAX_LIMIT
from app.compute.request_body import body_schema, json_body
from app.compute.schemas import ServerCreateSchema, ServerCreateV237Schema, ServerUpdateSchema, check_version_gated
from app.compute.server_actions import soft_delete
from app.compute.server_bodies import render, server_addresses
from app.compute.views import base_url, compute_prefix, links, server_summary
from app.context import RequestContext, current
from app.microversion import current as api_version
from app.policy import authorize, checks_inside, enforce
from app.policy_names import ACTION_RULES
from core.db import plain_rows, read_session
from core.errors import bad_request, not_found
from core.models import Flavor, Instance
from tasks.messaging import rpc

bp = Blueprint("servers", __name__)
_SORT_KEYS = {"created_at": Instance.created_at, "updated_at": Instance.updated_at,
              "display_name": Instance.display_name, "uuid": Instance.uuid, "vm_state": Instance.vm_state,
              "task_state": Instance.task_state, "power_state": Instance.power_state, "host": Instance.host,
              "launched_at": Instance.launched_at, "image_ref": Instance.image_ref,
              "availability_zone": Instance.availability_zone, "hostname": Instance.hostname}
_STATUS_TO_VM_STATES = {"ACTIVE": ["active"], "BUILD": ["building"], "SHUTOFF": ["stopped"], "ERROR": ["error"],
                        "PAUSED": ["paused"], "SUSPENDED": ["suspended"], "DELETED": ["deleted"],
                        "SOFT_DELETED": ["soft-delete"], "REBOOT": ["active"], "HARD_REBOOT": ["active"],
                        "VERIFY_RESIZE": ["resized"], "RESCUE": ["rescued"],
                        "SHELVED_OFFLOADED": ["shelved", "shelved_offloaded"]}


# --- list ----------------------------------------------------------------------------------------------------------

def _list_query(ctx: RequestContext) -> tuple[list, int, Instance | None]:
    v = api_version()
    server_filters.check_known(request.args, v)
    args = server_filters.allowed(request.args, v, ctx.is_admin)
    g.ip_patterns = server_filters.ip_patterns(args)
    conds = []
    # Nova: the presence of all_tenants means "all", unless its value is a false-like string.
    all_tenants = ctx.is_admin and "all_tenants" in args and \
        args["all_tenants"].lower() not in ("0", "false", "off", "no")
    # Nova (lp:1185290): without all_tenants the caller's own project is listed, whatever project_id or
    # tenant_id asks; with it, either one filters.
    project = args.get("project_id") or args.get("tenant_id")
    if not all_tenants:
        conds.append(Instance.project_id == ctx.project_id)
    elif project:
        conds.append(Instance.project_id == project)
    include_deleted = ("changes-since" in args or "changes-before" in args
                       or (ctx.is_admin and args.get("deleted", "").lower() in ("true", "1")))
    if not include_deleted:
        conds.append(Instance.deleted == 0)
    since = server_filters.parse_time("changes-since", args["changes-since"]) if "changes-since" in args else None
    if since is not None:
        conds.append(Instance.updated_at >= since)
    if "changes-before" in args:
        if not v.matches("2.66"):
            raise bad_request("Additional properties are not allowed ('changes-before' was unexpected)")
        before = server_filters.parse_time("changes-before", args["changes-before"])
        if since is not None and before < since:
            raise bad_request("The value of changes-since must be less than or equal to changes-before.")
        conds.append(Instance.updated_at <= before)
    if "name" in args:
        try:
            pattern = re.compile(args["name"])
        except re.error:
            raise bad_request(f"Invalid regular expression for name: {args['name']}") from None
        g.name_regex = pattern
    for status in args.getlist("status"):
        vm_states = _STATUS_TO_VM_STATES.get(status.upper())
        if vm_states is None:
            if v.matches("2.38"):
                raise bad_request("Invalid status value")
            return [Instance.id.is_(None)], 0, None  # Nova answers an empty list before 2.38
        conds.append(Instance.vm_state.in_(vm_states))
        if status.upper() in ("REBOOT", "HARD_REBOOT"):
            conds.append(Instance.task_state.in_(["rebooting"] if status.upper() == "REBOOT" else ["rebooting_hard"]))
    if "image" in args:
        conds.append(Instance.image_ref == args["image"].rstrip("/").split("/")[-1])
    if "flavor" in args:
        conds.append(Instance.flavor_id.in_(select(Flavor.id).where(Flavor.flavorid == args["flavor"])))
    if "reservation_id" in args:
        conds.append(Instance.reservation_id == args["reservation_id"])
    conds.extend(instance_tags.list_filters(args, v))
    conds.extend(server_filters.conditions(args, v, ctx.is_admin))
    limit_arg = args.get("limit")
    try:
        limit = min(int(limit_arg), MAX_LIMIT) if limit_arg is not None else MAX_LIMIT
        if limit < 0:
            raise ValueError
    except ValueError:
        raise bad_request(
            f"Invalid input for query parameters limit. Value: {limit_arg}. '{limit_arg}' does not match "
            f"'^[0-9]*$'") from None
    marker = None
    if "marker" in args:
        with read_session() as s:
            marker = s.scalars(select(Instance).where(Instance.uuid == args["marker"])).first()
        if marker is None:
            raise bad_request(f"marker [{args['marker']}] not found")
    return conds, limit, marker


def _sorted(query, marker: Instance | None):
    keys = request.args.getlist("sort_key") or ["created_at"]
    dirs = request.args.getlist("sort_dir") or []
    order, cols = [], []
    for i, key in enumerate(keys):
        col = _SORT_KEYS.get(key)
        if col is None:
            col = server_filters.sort_column(key, api_version())
        if col is None and server_filters.ignored_sort_key(key, api_version()):
            continue
        if col is None:
            raise bad_request(f"Invalid input for query parameters sort_key. Value: {key}.")
        direction = (dirs[i] if i < len(dirs) else (dirs[0] if dirs else "desc")).lower()
        if direction not in ("asc", "desc"):
            raise bad_request(f"Invalid input for query parameters sort_dir. Value: {direction}.")
        cols.append((col, direction))
    cols = cols or [(Instance.created_at, "desc")]
    cols.append((Instance.id, cols[0][1]))  # unique tie-breaker so markers are exact
    order = [c.asc() if d == "asc" else c.desc() for c, d in cols]
    if marker is not None:
        # Keyset pagination: rows strictly after the marker in the sort order.
        clauses = []
        for i, (col, direction) in enumerate(cols):
            value = getattr(marker, col.key)
            equal_before = [c == getattr(marker, c.key) for c, _ in cols[:i]]
            after = col > value if direction == "asc" else col < value
            if value is None:
                after = col.isnot(None) if direction == "asc" else None
                if after is None:
                    continue
            clauses.append(and_(*equal_before, after))
        query = query.where(or_(*clauses))
    return query.order_by(*order)


def _matching_ips(s: Session, instances: list[Instance], patterns: list) -> list[Instance]:
    """Nova's ``ip`` / ``ip6`` filters: a regular expression searched in each of the server's addresses."""
    if not patterns:
        return instances
    addresses = server_addresses(s, [i.uuid for i in instances])

    def hit(uuid: str) -> bool:
        ips = [a for nets in addresses.get(uuid, {}).values() for a in nets]
        return all(any(a["version"] == version and pattern.search(a["addr"]) for a in ips)
                   for version, pattern in patterns)
    return [i for i in instances if hit(i.uuid)]


# A list reads plain rows into named tuples (attribute access by column name, as on Instance), not ORM objects:
# building 1,000 mapped objects was a third of a 1,000-server list's CPU, and a SQLAlchemy Row's attribute
# access (Python-level, about 0.7 us) is ten times a named tuple's, some 40 per rendered server. Columns a list
# never shows are not read at all (their JSON decoding was another fifth); a view that starts using one fails
# with AttributeError in its tests.
_LIST_UNSHOWN = {"system_metadata", "networks_request", "scheduler_hints", "device_metadata", "key_data",
                 "user_data_enc", "admin_pass_enc"}
_LIST_COLUMNS = tuple(c for c in Instance.__table__.c if c.key not in _LIST_UNSHOWN)
ListedInstance = namedtuple("ListedInstance", [c.key for c in _LIST_COLUMNS])


def _list(detail: bool) -> Response:
    ctx = current()
    conds, limit, marker = _list_query(ctx)
    with read_session() as s:
        query = select(*_LIST_COLUMNS)
        query = _sorted(query.where(and_(*conds)) if conds else query, marker)
        regex, ips = g.get("name_regex"), g.get("ip_patterns")
        if regex is None and not ips:
            instances = list(map(ListedInstance._make, plain_rows(s, query.limit(limit))))
        else:
            instances = [i for i in map(ListedInstance._make, plain_rows(s, query))
                         if regex is None or regex.search(i.display_name)]
            instances = _matching_ips(s, instances, ips)[:limit]
        body: dict = {"servers": render(s, instances, ctx) if detail else [server_summary(i) for i in instances]}
    if instances and len(instances) == limit:
        params = request.args.to_dict(flat=False)
        params["marker"] = [instances[-1].uuid]
        query_string = "&".join(f"{k}={val}" for k, vals in params.items() for val in vals)
        path = "servers/detail" if detail else "servers"
        body["servers_links"] = [{"rel": "next", "href": f"{base_url()}{compute_prefix()}/{path}?{query_string}"}]
    return jsonify(body)


@bp.get("/servers")
@enforce("project_reader_api")
def list_servers():
    return _list(detail=False)


@bp.get("/servers/detail")
@enforce("project_reader_api")
def list_servers_detail():
    return _list(detail=True)


@bp.get("/servers/<server_id>")
@enforce("project_reader_api")
def show_server(server_id: str):
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
        return jsonify({"server": render(s, [inst], ctx, show=True)[0]})


# --- create --------------------------------------------------------------------------------------------------------

@bp.post("/servers")
@enforce("project_member_api")
@body_schema(ServerCreateSchema, root="server", siblings=boot_request.SCHEDULER_HINTS,
             versions={"2.37": ServerCreateV237Schema})
def create_server(body: dict):
    boot = boot_request.build(body, boot_request.scheduler_hints(json_body()), current(), api_version(),
                              authorize)
    result = rpc.call("stratus.conductor.create_instances", boot.request, argsrepr=repr((boot.redacted(),)))
    if body.get("return_reservation_id"):
        return jsonify({"reservation_id": boot.reservation_id}), 202
    uuid = result["uuids"][0]
    server = {"id": uuid, "links": links("servers", uuid), "OS-DCF:diskConfig": "MANUAL",
              "security_groups": body.get("security_groups", [{"name": "default"}]), "adminPass": boot.admin_pass}
    resp = jsonify({"server": server})
    resp.status_code = 202
    resp.headers["Location"] = f"{base_url()}{compute_prefix()}/servers/{uuid}"
    return resp


# --- update ------------------------------------------------------------------------------------------------------

@bp.put("/servers/<server_id>")
@enforce("project_member_api")
@body_schema(ServerUpdateSchema, root="server")
def update_server(body: dict, server_id: str):
    ctx = current()
    check_version_gated(body, ServerUpdateSchema.gates, api_version())
    names = {"name": "display_name", "description": "display_description", "hostname": "hostname",
             "accessIPv4": "access_ip_v4", "accessIPv6": "access_ip_v6"}
    values = {names[k]: val for k, val in body.items() if k in names}
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    if values:
        rpc.call("stratus.conductor.update_instance", inst.uuid, values)
    with read_session() as s:  # before 2.75 Nova's answer leaves out the extended attributes
        return jsonify({"server": render(s, [get_instance(s, server_id, ctx)], ctx, show=True,
                                         extended=api_version().matches("2.75"))[0]})


# --- delete and actions --------------------------------------------------------------------------------------------

@bp.delete("/servers/<server_id>")
@enforce("project_member_api")
def delete_server(server_id: str):
    if not soft_delete(server_id):
        start_action(server_id, "delete")
    return "", 204


def _authorize_action(server_id: str, name: str) -> None:
    """Nova's rule of the action, with the instance's project as target (404 first if it is not visible).
    An action without a rule in ACTION_RULES fails closed (KeyError: 500)."""
    rule = ACTION_RULES[name][0]
    with read_session() as s:
        inst = get_instance(s, server_id, current())
    g.policy_rule = rule  # the handlers' recheck() calls use it
    authorize(rule, inst.project_id)


@bp.post("/servers/<server_id>/action")
@checks_inside(registry=ACTION_RULES)
def server_action(server_id: str):
    body = json_body()
    if len(body) != 1:
        raise bad_request("Malformed request body: exactly one action is expected")
    name, args = next(iter(body.items()))
    if name in NOVA_NETWORK_ACTIONS and api_version().matches("2.44"):
        raise not_found("The resource could not be found.")  # Nova removed these actions at 2.44
    if name not in ACTIONS:
        raise bad_request(f"There is no such action: {name}")
    _authorize_action(server_id, name)
    resp = ACTIONS[name](server_id, args)
    return resp if resp is not None else ("", 202)
