"""/servers: create, list, list detail, show, delete and the server actions."""
from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid as uuidlib
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from app.compute.schemas import (LockSchema, RebootSchema, ServerCreateSchema, ServerUpdateSchema,
                                 check_version_gated, is_uuid, json_body, load)
from app.compute.views import ServerView, base_url, compute_prefix, links, server_summary
from app.context import RequestContext, current
from app.microversion import current as api_version
from app.openapi import body_schema
from app.policy import authorize, checks_inside, enforce, recheck
from app.policy_names import ACTION_RULES, sub_rule
from core import crypto, network, quota, states
from core.db import plain_rows, read_session
from core.errors import ApiError, bad_request, conflict, not_found
from core.models import (ComputeNode, FixedIP, Flavor, Image, Instance, InstanceFault, InstanceGroup,
                         InstanceGroupMember, KeyPair, Network, Service, utcnow)
from core.routing import compute_queue
from tasks.messaging import rpc

bp = Blueprint("servers", __name__)
MAX_LIMIT = 1000
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


# --- lookups -------------------------------------------------------------------------------------------------------

def get_instance(s: Session, server_id: str, ctx: RequestContext) -> Instance:
    """The caller's live instance, or 404 (another project's instance is indistinguishable from none)."""
    if is_uuid(server_id):
        inst = s.scalars(select(Instance).where(Instance.uuid == server_id, Instance.deleted == 0)).first()
        if inst is not None and (ctx.is_admin or inst.project_id == ctx.project_id):
            return inst
    raise not_found(f"Instance {server_id} could not be found.")


def instance_for_subresource(server_id: str, write: bool = False) -> Instance:
    """The instance behind /servers/{id}/<sub-resource> (metadata, tags): visible to the caller, the endpoint's
    rule re-checked for its project, and for writes not locked (admins may write a locked server)."""
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    recheck(inst.project_id)
    if write and inst.locked and not ctx.is_admin:
        raise conflict(f"Instance {inst.uuid} is locked")
    return inst


def latest_faults(s: Session, uuids: list[str]) -> dict[str, InstanceFault]:
    if not uuids:
        return {}
    newest = (select(InstanceFault.instance_uuid, func.max(InstanceFault.id).label("fid"))
              .where(InstanceFault.instance_uuid.in_(uuids)).group_by(InstanceFault.instance_uuid).subquery())
    rows = s.scalars(select(InstanceFault).join(newest, InstanceFault.id == newest.c.fid))
    return {f.instance_uuid: f for f in rows}


def host_statuses(s: Session, hosts: set[str]) -> dict[str, str]:
    from core.services import service_is_up

    if not hosts:
        return {}
    now = utcnow()
    out = {}
    for svc in s.scalars(select(Service).where(Service.host.in_(hosts), Service.binary == "stratus-compute")):
        out[svc.host] = "DOWN" if not service_is_up(svc, now) else ("MAINTENANCE" if svc.disabled else "UP")
    return out


def render(s: Session, instances: list[Instance], ctx: RequestContext, show: bool = False) -> list[dict]:
    faults = latest_faults(s, [i.uuid for i in instances if i.vm_state in ("error", "deleted")])
    statuses = host_statuses(s, {i.host for i in instances if i.host}) if ctx.is_admin else {}
    v = api_version()
    addresses = server_addresses(s, [i.uuid for i in instances])
    groups = server_groups_of(s, [i.uuid for i in instances]) if show and v.matches("2.71") else {}
    tags = server_tags.tags_of(s, [i.uuid for i in instances]) if v.matches(server_tags.MIN_VERSION) else {}
    view = ServerView(v, ctx, show)
    return [view.body(i, faults.get(i.uuid), statuses.get(i.host or "", "UNKNOWN" if i.host else ""),
                      addresses=addresses.get(i.uuid), server_groups=groups.get(i.uuid, []), tags=tags.get(i.uuid))
            for i in instances]


def server_groups_of(s: Session, uuids: list[str]) -> dict[str, list[str]]:
    """The server group (a list of at most one uuid, as Nova shows it from 2.71) of each instance."""
    rows = plain_rows(s, select(InstanceGroupMember.instance_uuid, InstanceGroup.uuid)
                     .join(InstanceGroup, InstanceGroup.id == InstanceGroupMember.group_id)
                     .where(InstanceGroupMember.instance_uuid.in_(uuids)))
    return {inst: [group] for inst, group in rows}


def _group_hint(s: Session, hints: dict, ctx: RequestContext) -> str | None:
    """The server group named by the ``group`` scheduler hint, if the caller may use it (Nova: 400 otherwise)."""
    if "group" not in hints:
        return None
    hint = hints["group"]
    if not isinstance(hint, str) or not is_uuid(hint):
        raise bad_request(f"Invalid input for field/attribute group. Value: {hint}. {hint!r} is not a 'uuid'")
    query = select(InstanceGroup.uuid).where(InstanceGroup.uuid == hint)
    if not ctx.is_admin:
        query = query.where(InstanceGroup.project_id == ctx.project_id)
    group = s.scalar(query)
    if group is None:
        raise bad_request(f"Instance group {hint} could not be found.")
    return group


def server_addresses(s: Session, uuids: list[str]) -> dict[str, dict]:
    """Nova's "addresses" per instance: {network name: [{version, addr, OS-EXT-IPS:type, ...mac_addr}]}."""
    if not uuids:
        return {}
    out: dict[str, dict] = {}
    rows = plain_rows(s, select(FixedIP.instance_uuid, FixedIP.address, FixedIP.mac, Network.name)
                     .join(Network, Network.id == FixedIP.network_id)
                     .where(FixedIP.instance_uuid.in_(uuids)).order_by(FixedIP.id))
    for uuid, address, mac, name in rows:
        out.setdefault(uuid, {}).setdefault(name, []).append(
            {"version": 4, "addr": address, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac})
    return out


# --- list ----------------------------------------------------------------------------------------------------------

def _parse_time(name: str, value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid input for query parameters {name}. Value: {value}. '{value}' is not a "
                          f"'date-time'") from None
    return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _list_query(ctx: RequestContext) -> tuple[list, int, Instance | None]:
    v = api_version()
    server_filters.check_known(request.args, v)
    args = server_filters.allowed(request.args, v, ctx.is_admin)
    g.ip_patterns = server_filters.ip_patterns(args)
    conds = []
    # Nova: the presence of all_tenants means "all", unless its value is a false-like string.
    all_tenants = ctx.is_admin and "all_tenants" in args and \
        args["all_tenants"].lower() not in ("0", "false", "off", "no")
    project = args.get("project_id") or args.get("tenant_id")
    if not ctx.is_admin:
        conds.append(Instance.project_id == ctx.project_id)
    elif project:
        conds.append(Instance.project_id == project)
    elif not all_tenants:
        conds.append(Instance.project_id == ctx.project_id)
    include_deleted = ("changes-since" in args or "changes-before" in args
                       or (ctx.is_admin and args.get("deleted", "").lower() in ("true", "1")))
    if not include_deleted:
        conds.append(Instance.deleted == 0)
    since = _parse_time("changes-since", args["changes-since"]) if "changes-since" in args else None
    if since is not None:
        conds.append(Instance.updated_at >= since)
    if "changes-before" in args:
        if not v.matches("2.66"):
            raise bad_request("Additional properties are not allowed ('changes-before' was unexpected)")
        before = _parse_time("changes-before", args["changes-before"])
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
    conds.extend(server_tags.list_filters(args))
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

def _ref_id(ref: object) -> str:
    return str(ref).rstrip("/").split("/")[-1]


_CREATE_GATES = {"description": "2.19", "tags": "2.52", "trusted_image_certificates": "2.63", "host": "2.74",
                 "hypervisor_hostname": "2.74", "hostname": "2.90"}


def _networks(body: dict) -> object:
    v = api_version()
    nets = body.get("networks")
    if v.matches("2.37"):
        if nets is None:
            raise bad_request(f"Invalid input for field/attribute server. Value: {body!r}. 'networks' is a "
                              f"required property")
        if isinstance(nets, str):
            if nets not in ("auto", "none"):
                raise bad_request(f"Invalid input for field/attribute networks. Value: {nets}. '{nets}' is not "
                                  f"one of ['none', 'auto']")
            return nets
    if nets is None:
        return "auto"
    if not isinstance(nets, list):
        raise bad_request(f"Invalid input for field/attribute networks. Value: {nets!r}. {nets!r} is not of "
                          f"type 'array'")
    for net in nets:
        if not isinstance(net, dict) or set(net) - {"uuid", "port", "fixed_ip", "tag"}:
            raise bad_request(f"Invalid input for field/attribute networks. Value: {nets!r}.")
        if "uuid" in net and not is_uuid(net["uuid"]):
            raise bad_request(f"Bad networks format: network uuid is not in proper format ({net['uuid']})")
        if "port" in net and net["port"]:
            raise bad_request(f"Port {net['port']} could not be found.")
        if net.get("uuid") != network.builtin().id:
            raise bad_request(f"Network {net.get('uuid')} could not be found.")
        if net.get("fixed_ip"):
            raise bad_request("Requesting a specific fixed IP is not supported.")
    if len(nets) > 1:
        raise bad_request("Only one NIC per server is supported: the built-in network.")
    return nets


# What a boot or rebuild checks of its image, read as plain columns (no ORM object per request).
_BOOT_IMAGE_QUERY = select(Image.id, Image.visibility, Image.owner, Image.status, Image.min_ram,
                           Image.min_disk).where(Image.id == bindparam("image_id"))


def _image_for_boot(s: Session, image_ref: str, ctx: RequestContext) -> Any:
    """The image's row (id, visibility, owner, status, min_ram, min_disk) if the caller may boot it; else 400."""
    image_id = _ref_id(image_ref)
    if not is_uuid(image_id):
        raise bad_request("Invalid imageRef provided.")
    img = plain_rows(s, _BOOT_IMAGE_QUERY, {"image_id": image_id}).first()
    if img is None or not (img.visibility in ("public", "community") or img.owner == ctx.project_id
                           or ctx.is_admin):
        raise bad_request("Can not find requested image")
    if img.status != "active":
        raise bad_request(f"Image {image_id} is not active.")
    return img


def _requested_host(s: Session, host: str | None, node: str | None) -> str | None:
    """2.74: the compute host named by ``host`` and/or ``hypervisor_hostname`` (400 when there is none)."""
    if host is None and node is None:
        return None
    query = select(ComputeNode.host)
    if host is not None:
        query = query.where(ComputeNode.host == host)
    if node is not None:
        query = query.where(ComputeNode.hypervisor_hostname == node)
    found = s.scalars(query).first()
    if found is None:
        raise bad_request(f"Compute host {host if node is None else node} could not be found.")
    return found


def _check_request_quotas(limits: dict[str, int], body: dict) -> None:
    """Quotas that limit one request: metadata items and (before 2.57) personality files; 403 like Nova."""
    try:
        quota.check_metadata_items(limits, len(body.get("metadata") or {}))
        quota.check_injected_files(limits, body.get("personality") or [])
    except quota.OverQuota as exc:
        raise ApiError(403, exc.message) from None
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _instances_that_fit(s: Session, project_id: str, limits: dict[str, int], flavor: Any, min_count: int,
                        max_count: int) -> int:
    """Nova's multi-create arithmetic on the usage seen now: 403 up front for what the conductor's reservation
    must refuse, and no request is built for more servers than the quota leaves room for. A single server is
    left to the conductor's reservation, which refuses it with the same 403 (one read less per boot)."""
    if max_count == 1:
        return 1
    try:
        return quota.instances_allowed(limits, quota.usage(s, project_id),
                                       flavor.vcpus, flavor.memory_mb, min_count, max_count)
    except quota.OverQuota as exc:
        raise ApiError(403, exc.message) from None


_CREATE_SCHEMA = ServerCreateSchema()  # stateless between loads: one for every request


@bp.post("/servers")
@enforce("project_member_api")
@body_schema(ServerCreateSchema, root="server")
def create_server():
    ctx = current()
    raw = json_body()
    hints = raw.get("OS-SCH-HNT:scheduler_hints", raw.get("os:scheduler_hints", {}))
    extra = set(raw) - {"server", "OS-SCH-HNT:scheduler_hints", "os:scheduler_hints"}
    if extra:
        raise bad_request(f"Additional properties are not allowed ('{sorted(extra)[0]}' was unexpected)")
    if not isinstance(hints, dict):
        raise bad_request("Invalid input for field/attribute OS-SCH-HNT:scheduler_hints.")
    body = load(_CREATE_SCHEMA, raw, root="server")
    check_version_gated(body, _CREATE_GATES)
    server_metadata.check_create_quota(body.get("metadata"))
    tags = server_tags.parse_create_tags(body)
    networks = _networks(body)
    device_tags.check_network_tags(networks)
    root_tag = device_tags.root_device_tag(body.get("block_device_mapping_v2") or [])
    if body.get("block_device_mapping") or body.get("block_device_mapping_v2"):
        bdms = body.get("block_device_mapping_v2") or []
        image_bdm = [b for b in bdms if b.get("source_type") == "image" and b.get("destination_type") == "local"]
        if len(bdms) != len(image_bdm):
            raise bad_request("Block device mappings other than a local image disk are not supported: Stratus has "
                              "no volume service.")
    if "host" in body or "hypervisor_hostname" in body:
        authorize(sub_rule("requested_destination"), ctx.project_id)
    min_count, max_count = body.get("min_count", 1), body.get("max_count", body.get("min_count", 1))
    if min_count > max_count:
        raise bad_request("min_count must be <= max_count")
    if max_count > 1 and "hostname" in body:
        raise bad_request("Cannot request a hostname with multiple instances")
    image_ref = body.get("imageRef") or next((b.get("uuid") for b in body.get("block_device_mapping_v2") or []
                                              if b.get("source_type") == "image"), "")
    if not image_ref:
        raise bad_request("Missing imageRef attribute")
    with read_session() as s:
        img = _image_for_boot(s, image_ref, ctx)
        flavor_id = _ref_id(body["flavorRef"])
        flavor_q = select(Flavor.flavorid, Flavor.vcpus, Flavor.memory_mb, Flavor.root_gb).where(
            Flavor.flavorid == flavor_id, Flavor.disabled.is_(False))
        if not ctx.is_admin:  # a private flavor only for the projects given access (Nova)
            from app.compute.flavors import visible_to
            flavor_q = flavor_q.where(visible_to(ctx.project_id))
        flavor = plain_rows(s, flavor_q).first()
        if flavor is None:
            raise bad_request("Invalid flavorRef provided.")
        if flavor.memory_mb < (img.min_ram or 0):
            raise bad_request("Flavor's memory is too small for requested image.")
        if flavor.root_gb and flavor.root_gb < (img.min_disk or 0):
            raise bad_request("Flavor's disk is too small for requested image.")
        key_data = None
        if body.get("key_name"):
            kp = s.scalars(select(KeyPair).where(KeyPair.user_id == ctx.user_id,
                                                 KeyPair.name == body["key_name"])).first()
            if kp is None:
                raise bad_request("Invalid key_name provided.")
            key_data = kp.public_key
        az = body.get("availability_zone")
        forced: tuple[str | None, str | None] = (None, None)
        if az:
            az, _, forced_at = az.partition(":")
            forced_host, _, forced_node = forced_at.partition(":")
            forced = (forced_host or None, forced_node or None)
            from core.host_zones import effective_zones
            zones = set(effective_zones(s).values())  # aggregate zones included
            if az not in zones:
                raise bad_request("The requested availability zone is not available")
        # Nothing below can refuse one server without metadata or files (the conductor reserves its quota).
        if body.get("metadata") or body.get("personality") or max_count > 1:
            limits = quota.project_limits(s, ctx.project_id)
            _check_request_quotas(limits, body)
            max_count = _instances_that_fit(s, ctx.project_id, limits, flavor, min_count, max_count)
        group_uuid = _group_hint(s, hints, ctx)
        if forced != (None, None):  # the older "zone:host:node" form, admin-only (Nova's forced_host policy)
            authorize(sub_rule("forced_host"), ctx.project_id)
            if "host" in body or "hypervisor_hostname" in body:
                raise bad_request("The availability_zone form zone:host:node and host / hypervisor_hostname are "
                                  "mutually exclusive.")
        requested_host = _requested_host(s, body.get("host", forced[0]), body.get("hypervisor_hostname", forced[1]))
    admin_pass = body.get("adminPass") or secrets.token_urlsafe(9)[:12]
    count = max_count
    reservation_id = "r-" + secrets.token_hex(4)
    req = {
        "request_id": g.request_id, "project_id": ctx.project_id, "user_id": ctx.user_id,
        "uuids": [str(uuidlib.uuid4()) for _ in range(count)], "count": count, "min_count": min_count,
        "name": body["name"],
        "description": body.get("description"), "hostname": body.get("hostname"), "image_id": img.id,
        "flavor_id": flavor.flavorid, "key_name": body.get("key_name"), "key_data": key_data,
        "availability_zone": az or None, "metadata": body.get("metadata") or {}, "networks": networks,
        "config_drive": "True" if str(body.get("config_drive", "")).lower() in ("true", "1") else "",
        "scheduler_hints": hints, "access_ip_v4": body.get("accessIPv4"), "access_ip_v6": body.get("accessIPv6"),
        "reservation_id": reservation_id, "group_uuid": group_uuid, "tags": tags, "requested_host": requested_host,
        "root_device_tag": root_tag,
        # Secrets travel encrypted and are redacted from Flower and logs by argsrepr.
        "user_data_enc": crypto.encrypt(body.get("user_data")), "admin_pass_enc": crypto.encrypt(admin_pass),
    }
    redacted = {k: ("<redacted>" if k.endswith("_enc") and v else v) for k, v in req.items()}
    result = rpc.call("stratus.conductor.create_instances", req, argsrepr=repr((redacted,)))
    if body.get("return_reservation_id"):
        return jsonify({"reservation_id": reservation_id}), 202
    uuid = result["uuids"][0]
    server = {"id": uuid, "links": links("servers", uuid), "OS-DCF:diskConfig": "MANUAL",
              "security_groups": [{"name": "default"}], "adminPass": admin_pass}
    resp = jsonify({"server": server})
    resp.status_code = 202
    resp.headers["Location"] = f"{base_url()}{compute_prefix()}/servers/{uuid}"
    return resp


# --- update ------------------------------------------------------------------------------------------------------

@bp.put("/servers/<server_id>")
@enforce("project_member_api")
@body_schema(ServerUpdateSchema, root="server")
def update_server(server_id: str):
    ctx = current()
    body = load(ServerUpdateSchema(), json_body(), root="server")
    check_version_gated(body, {"description": "2.19", "hostname": "2.90"})
    names = {"name": "display_name", "description": "display_description", "hostname": "hostname",
             "accessIPv4": "access_ip_v4", "accessIPv6": "access_ip_v6"}
    values = {names[k]: (str(val) if k.startswith("access") else val) for k, val in body.items() if k in names}
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    if values:
        rpc.call("stratus.conductor.update_instance", inst.uuid, values)
    with read_session() as s:
        return jsonify({"server": render(s, [get_instance(s, server_id, ctx)], ctx, show=True)[0]})


def _lock(server_id: str, args: object) -> None:
    """Nova's lock: the owner's project locking an already-locked server changes nothing; otherwise the lock
    records who took it (``owner`` or ``admin``), which decides whether unlock needs unlock_override."""
    ctx = current()
    reason = None
    if args is not None:
        if not api_version().matches("2.73") and args != {}:
            raise bad_request("Additional properties are not allowed (locked_reason needs microversion 2.73)")
        reason = load(LockSchema(), args).get("locked_reason")
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    is_owner = inst.project_id == ctx.project_id
    if inst.locked and is_owner:
        return
    rpc.call("stratus.conductor.update_instance", inst.uuid,
             {"locked": True, "locked_reason": reason, "locked_by": "owner" if is_owner else "admin"})


def expected_locked_by(inst: Instance, ctx: RequestContext) -> bool:
    """Nova's is_expected_locked_by: unlocked, or locked by the caller's side (owner project / admin)."""
    expect = "owner" if inst.project_id == ctx.project_id else "admin"
    return not inst.locked_by or inst.locked_by == expect


def _unlock(server_id: str, args: object) -> None:
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    if not expected_locked_by(inst, ctx):
        authorize(sub_rule("unlock_override"), inst.project_id)
    rpc.call("stratus.conductor.update_instance", inst.uuid,
             {"locked": False, "locked_reason": None, "locked_by": None})


# --- delete and actions --------------------------------------------------------------------------------------------

def _action(server_id: str, action: str) -> None:
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
        recheck(inst.project_id)
        if inst.locked and not ctx.is_admin:
            raise conflict(f"Instance {inst.uuid} is locked")
    rpc.call("stratus.conductor.server_action", {"instance_uuid": inst.uuid, "action": action,
                                                 "request_id": g.request_id, "user_id": ctx.user_id,
                                                 "project_id": ctx.project_id})


@bp.delete("/servers/<server_id>")
@enforce("project_member_api")
def delete_server(server_id: str):
    from app.compute.server_actions import soft_delete

    if not soft_delete(server_id):
        _action(server_id, "delete")
    return "", 204


def _console_output(server_id: str, args: dict | None) -> Response:
    ctx = current()
    if args is not None and not isinstance(args, dict):
        raise bad_request(f"Invalid input for field/attribute os-getConsoleOutput. Value: {args!r}. {args!r} is "
                          f"not of type 'object'")
    length = (args or {}).get("length")
    if length is not None:
        try:
            length = int(length)
        except (TypeError, ValueError):
            raise bad_request(f"Invalid input for field/attribute length. Value: {length}.") from None
        if length < -1:
            raise bad_request(f"Invalid input for field/attribute length. Value: {length}.")
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    if not inst.host or inst.vm_state == states.BUILDING:
        raise conflict(f"Instance {inst.uuid} is not ready")
    output = rpc.call("stratus.compute.console_output", {"host": inst.host, "instance_uuid": inst.uuid},
                      queue=compute_queue(inst.host))
    if length is not None and length >= 0:
        output = "\n".join(output.splitlines()[-length:]) if length else ""
    return jsonify({"output": output})


# Other modules add server actions here (name -> handler(server_id, args) -> response or None for 202).
EXTRA_ACTIONS: dict[str, Callable[[str, object], Response | None]] = {}

EXTRA_ACTIONS.update({"lock": _lock, "unlock": _unlock})

_NOVA_NETWORK_ACTIONS = ("addFixedIp", "removeFixedIp", "addFloatingIp", "removeFloatingIp")  # never in Stratus
_SIMPLE_ACTIONS = {"os-stop": "stop", "os-start": "start", "pause": "pause", "unpause": "unpause",
                   "suspend": "suspend", "resume": "resume"}


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
    if name in _NOVA_NETWORK_ACTIONS and api_version().matches("2.44"):
        raise not_found("The resource could not be found.")  # Nova removed these actions at 2.44
    if name not in _SIMPLE_ACTIONS and name not in EXTRA_ACTIONS and name not in ("reboot", "os-getConsoleOutput"):
        raise bad_request(f"There is no such action: {name}")
    _authorize_action(server_id, name)
    if name in _SIMPLE_ACTIONS:
        _action(server_id, _SIMPLE_ACTIONS[name])
    elif name == "reboot":
        reboot = load(RebootSchema(), body, root="reboot")
        _action(server_id, "reboot_hard" if reboot["type"].upper() == "HARD" else "reboot")
    elif name == "os-getConsoleOutput":
        return _console_output(server_id, args)
    elif name in EXTRA_ACTIONS:
        resp = EXTRA_ACTIONS[name](server_id, args)
        if resp is not None:
            return resp
    else:
        raise bad_request(f"There is no such action: {name}")
    return "", 202


# Late imports: these modules import get_instance from here.
from app.compute import device_tags, server_filters, server_metadata, server_tags  # noqa: E402
