"""Read a boot's server group for the scheduler and for the conductor's claim-time re-check."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Instance, InstanceGroup, InstanceGroupMember
from scheduler.host_state import GroupSpec


def group_spec(session: Session, instance_uuid: str, *, lock: bool = False) -> GroupSpec | None:
    """The instance's server group and the hosts of its other live members, or None if it is in no group.

    ``lock`` takes the group row FOR UPDATE first (the conductor's claim), so concurrent claims of one group's
    members are serialised and each sees the hosts the others committed."""
    group_id = session.scalar(select(InstanceGroupMember.group_id)
                              .where(InstanceGroupMember.instance_uuid == instance_uuid))
    if group_id is None:
        return None
    query = select(InstanceGroup.uuid, InstanceGroup.policy, InstanceGroup.rules).where(InstanceGroup.id == group_id)
    group = session.execute(query.with_for_update() if lock else query).first()
    if group is None:
        return None  # deleted concurrently: its members are free again
    uuid, policy, rules = group
    m, i = InstanceGroupMember, Instance
    counts = session.execute(select(i.host, func.count()).join(m, m.instance_uuid == i.uuid).where(
        m.group_id == group_id, i.uuid != instance_uuid, i.deleted == 0, i.host.is_not(None)).group_by(i.host))
    return GroupSpec(uuid=uuid, policy=policy, max_server_per_host=int((rules or {}).get("max_server_per_host", 1)),
                     member_hosts={host: n for host, n in counts})
