"""The conductor's writes of server groups (os-server-groups) and their membership."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.errors import ConductorError
from core.models import InstanceGroup, InstanceGroupMember
from core.writes import quotas


def create_server_group(s: Session, req: dict) -> dict:
    quotas.check_server_group_quota(s, req["project_id"], req["user_id"], groups=1)
    group = InstanceGroup(name=req["name"], project_id=req["project_id"], user_id=req["user_id"],
                          policy=req["policy"], rules=req.get("rules") or {})
    s.add(group)
    s.flush()
    return {"id": group.uuid}


def delete_server_group(s: Session, uuid: str) -> None:
    """Delete the group; its members stay as they are, only their membership goes (as in Nova)."""
    group = s.scalars(select(InstanceGroup).where(InstanceGroup.uuid == uuid).with_for_update()).first()
    if group is None:
        raise ConductorError(404, f"Instance group {uuid} could not be found.")
    s.execute(delete(InstanceGroupMember).where(InstanceGroupMember.group_id == group.id))
    quotas.release(s, group.project_id, {"server_groups": 1}, group.user_id)
    s.delete(group)


def remove_group_member(s: Session, instance_uuid: str) -> None:
    s.execute(delete(InstanceGroupMember).where(InstanceGroupMember.instance_uuid == instance_uuid))
