"""/os-server-groups: list, create, show, delete (Nova's body per microversion: 2.13 project/user, 2.64 policy+rules).

Groups are written by the conductor. Another project's group is indistinguishable from a missing one (404).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.compute.request_body import body_schema
from app.compute.schemas import (ServerGroupCreateSchema, ServerGroupCreateV215Schema, ServerGroupCreateV264Schema,
                                 MAX_INT, is_uuid)
from app.context import RequestContext, current
from app.microversion import APIVersion, current as api_version
from app.policy import authorize, enforce, recheck
from app.policy_names import sub_rule
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import Instance, InstanceGroup, InstanceGroupMember
from tasks.messaging import rpc

bp = Blueprint("server_groups", __name__)
MAX_LIMIT = 1000
POLICIES_V21 = ["anti-affinity", "affinity"]
POLICIES_V215 = [*POLICIES_V21, "soft-anti-affinity", "soft-affinity"]


def visible_group(s: Session, group_id: str, ctx: RequestContext) -> InstanceGroup:
    """The group if the caller may see it (its project's, or any for an admin); else Nova's not-found."""
    group = None
    if is_uuid(group_id):
        query = select(InstanceGroup).where(InstanceGroup.uuid == group_id)
        if not ctx.is_admin:
            query = query.where(InstanceGroup.project_id == ctx.project_id)
        group = s.scalars(query).first()
    if group is None:
        raise not_found(f"Instance group {group_id} could not be found.")
    return group


def live_members(s: Session, group_ids: list[int]) -> dict[int, list[str]]:
    """The not-deleted member instances of each group (one query for any number of groups)."""
    out: dict[int, list[str]] = {gid: [] for gid in group_ids}
    if group_ids:
        m = InstanceGroupMember
        rows = s.execute(select(m.group_id, m.instance_uuid).join(Instance, Instance.uuid == m.instance_uuid)
                         .where(m.group_id.in_(group_ids), Instance.deleted == 0).order_by(m.id))
        for gid, uuid in rows:
            out[gid].append(uuid)
    return out


def group_body(group: InstanceGroup, members: list[str], v: APIVersion) -> dict:
    body: dict[str, Any] = {"id": group.uuid, "name": group.name}
    if v.matches("2.64"):
        body["policy"] = group.policy
        body["rules"] = dict(group.rules or {})
    else:
        body["policies"] = [group.policy]
        body["metadata"] = {}
    body["members"] = members
    if v.matches("2.13"):
        body["project_id"] = group.project_id
        body["user_id"] = group.user_id
    return body


def _non_negative(name: str) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise bad_request(f"Invalid input for query parameters {name}. Value: {value}. '{value}' does not match "
                          f"'^[0-9]*$'")
    return int(value)


@bp.get("/os-server-groups")
@enforce("project_reader_api")
def list_server_groups():
    ctx = current()
    v = api_version()
    if v.matches("2.75"):
        extra = sorted(set(request.args) - {"all_projects", "limit", "offset"})
        if extra:
            raise bad_request(f"Additional properties are not allowed ('{extra[0]}' was unexpected)")
    limit = min(_non_negative("limit") or MAX_LIMIT, MAX_LIMIT)
    offset = _non_negative("offset") or 0
    query = select(InstanceGroup).order_by(InstanceGroup.id)
    # Nova: all_projects is honoured for admins only (others get their own groups, not an error).
    if "all_projects" in request.args and ctx.is_admin:
        authorize(sub_rule("server_groups_all_projects"))
    else:
        query = query.where(InstanceGroup.project_id == ctx.project_id)
    with read_session() as s:
        groups = list(s.scalars(query.offset(offset).limit(limit)))
        members = live_members(s, [g.id for g in groups])
    return jsonify({"server_groups": [group_body(g, members[g.id], v) for g in groups]})


@bp.get("/os-server-groups/<group_id>")
@enforce("project_reader_api")
def show_server_group(group_id: str):
    ctx = current()
    with read_session() as s:
        group = visible_group(s, group_id, ctx)
        members = live_members(s, [group.id])[group.id]
    return jsonify({"server_group": group_body(group, members, api_version())})


def _enum(field: str, value: object, allowed: list[str]) -> None:
    if not isinstance(value, str):
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {value}. {value!r} is not of type "
                          f"'string'")
    if value not in allowed:
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {value}. {value!r} is not one of "
                          f"{allowed!r}")


def _policy_before_264(body: dict, v: APIVersion) -> str:
    """policies: a list of exactly one policy (soft-* from 2.15); errors as Nova's JSON schema reports them."""
    policies = body["policies"]
    if not isinstance(policies, list):
        raise bad_request(f"Invalid input for field/attribute policies. Value: {policies}. {policies!r} is not of "
                          f"type 'array'")
    if policies:
        _enum("0", policies[0], POLICIES_V215 if v.matches("2.15") else POLICIES_V21)
    if len(policies) != len(set(map(repr, policies))):
        raise bad_request(f"Invalid input for field/attribute policies. Value: {policies}. {policies!r} has "
                          f"non-unique elements")
    if len(policies) != 1:
        problem = "should be non-empty" if not policies else "is too long"
        raise bad_request(f"Invalid input for field/attribute policies. Value: {policies}. {policies!r} {problem}")
    return policies[0]


def _rules(rules: object) -> dict:
    """2.64 rules: only anti-affinity's max_server_per_host, a positive integer (or a string of digits)."""
    if not isinstance(rules, dict):
        raise bad_request(f"Invalid input for field/attribute rules. Value: {rules}. {rules!r} is not of type "
                          f"'object'")
    extra = sorted(set(rules) - {"max_server_per_host"})
    if extra:
        raise bad_request(f"Invalid input for field/attribute rules. Value: {rules}. Additional properties are not "
                          f"allowed ({', '.join(repr(k) for k in extra)} "
                          f"{'was' if len(extra) == 1 else 'were'} unexpected)")
    if "max_server_per_host" not in rules:
        return {}
    value = rules["max_server_per_host"]
    prefix = f"Invalid input for field/attribute max_server_per_host. Value: {value}."
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad_request(f"{prefix} {value!r} is not of type 'integer', 'string'")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):  # int() refuses "²"
        raise bad_request(f"{prefix} {value!r} does not match '^[0-9]*$'" if value else
                          f"{prefix} {value!r} should be non-empty")
    if int(value) < 1:
        raise bad_request(f"{prefix} {value!r} is less than the minimum of 1")
    if int(value) > MAX_INT:  # beyond the rule's column
        raise bad_request(f"{prefix} {value!r} is greater than the maximum of {MAX_INT}")
    return {"max_server_per_host": int(value)}


@bp.post("/os-server-groups")
@enforce("project_member_api")
@body_schema(ServerGroupCreateSchema, root="server_group", versions={"2.15": ServerGroupCreateV215Schema,
                                                                   "2.64": ServerGroupCreateV264Schema})
def create_server_group(body: dict):
    ctx = current()
    v = api_version()
    if v.matches("2.64"):
        policy = body["policy"]
        _enum("policy", policy, POLICIES_V215)
        rules = _rules(body.get("rules", {}))
        if policy != "anti-affinity" and rules:
            raise bad_request("Only anti-affinity policy supports rules.")
    else:
        policy, rules = _policy_before_264(body, v), {}
    created = rpc.call("stratus.conductor.create_server_group", {
        "name": body["name"], "policy": policy, "rules": rules, "project_id": ctx.project_id,
        "user_id": ctx.user_id})
    with read_session() as s:
        group = s.scalars(select(InstanceGroup).where(InstanceGroup.uuid == created["id"])).one()
    return jsonify({"server_group": group_body(group, [], v)})


@bp.delete("/os-server-groups/<group_id>")
@enforce("project_member_api")
def delete_server_group(group_id: str):
    ctx = current()
    with read_session() as s:
        group = visible_group(s, group_id, ctx)
    recheck(group.project_id)
    rpc.call("stratus.conductor.delete_server_group", group.uuid)
    return "", 204
