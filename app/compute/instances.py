"""The instance behind a ``/servers/{id}`` request, found and checked as every server view, action and
sub-resource does: visible to the caller (else 404), the view's policy rule run again for the instance's project
(403), and for a write not locked (409; admins may write a locked server). Also the conductor call of the actions
that need nothing more (stop, start, pause, ..., delete)."""
from __future__ import annotations

from flask import g
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.compute.schemas import is_uuid
from app.context import RequestContext, current
from app.policy import recheck
from core.db import read_session
from core.errors import conflict, not_found
from core.models import Instance
from tasks.messaging import rpc


def get_instance(s: Session, server_id: str, ctx: RequestContext) -> Instance:
    """The caller's live instance, or 404 (another project's instance is indistinguishable from none)."""
    if is_uuid(server_id):
        inst = s.scalars(select(Instance).where(Instance.uuid == server_id, Instance.deleted == 0)).first()
        if inst is not None and (ctx.is_admin or inst.project_id == ctx.project_id):
            return inst
    raise not_found(f"Instance {server_id} could not be found.")


def instance_for_subresource(server_id: str, write: bool = False) -> Instance:
    """The instance behind /servers/{id}/<sub-resource> or an action: visible to the caller, the endpoint's rule
    re-checked for its project, and for writes not locked."""
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    recheck(inst.project_id)
    if write and inst.locked and not ctx.is_admin:
        raise conflict(f"Instance {inst.uuid} is locked")
    return inst


def writable_instance(server_id: str) -> Instance:
    """The caller's instance for a state-changing action: 404 if not visible, 403 for readers, 409 if locked."""
    return instance_for_subresource(server_id, write=True)


def start_action(server_id: str, action: str) -> None:
    """An action the conductor runs from the instance alone: it checks the state and starts the canvas."""
    inst = writable_instance(server_id)
    ctx = current()
    rpc.call("stratus.conductor.server_action", {"instance_uuid": inst.uuid, "action": action,
                                                 "request_id": g.request_id, "user_id": ctx.user_id,
                                                 "project_id": ctx.project_id})
