"""Nova's vm_states, task_states and the status the API shows for them (nova/compute/vm_states.py,
task_states.py, nova/api/openstack/common.py)."""
from __future__ import annotations

from core.power_state import PowerState

ACTIVE, BUILDING, PAUSED, SUSPENDED, STOPPED, ERROR, DELETED, SOFT_DELETED = (
    "active", "building", "paused", "suspended", "stopped", "error", "deleted", "soft-delete")

SCHEDULING, SPAWNING, POWERING_OFF, POWERING_ON = "scheduling", "spawning", "powering-off", "powering-on"
REBOOTING, REBOOTING_HARD, DELETING = "rebooting", "rebooting_hard", "deleting"

# task_states the server status shows instead of the vm_state's status
_TASK_STATUS = {REBOOTING: "REBOOT", REBOOTING_HARD: "HARD_REBOOT", "reboot_pending": "REBOOT",
                "reboot_started": "REBOOT", "reboot_pending_hard": "HARD_REBOOT",
                "reboot_started_hard": "HARD_REBOOT", "rebuilding": "REBUILD", "resize_prep": "RESIZE",
                "resize_migrating": "RESIZE", "resize_migrated": "RESIZE", "resize_finish": "RESIZE",
                "migrating": "MIGRATING", "rebuild_spawning": "REBUILD", "rebuild_block_device_mapping": "REBUILD",
                "password": "PASSWORD"}
_VM_STATUS = {ACTIVE: "ACTIVE", BUILDING: "BUILD", STOPPED: "SHUTOFF", "resized": "VERIFY_RESIZE",
              PAUSED: "PAUSED", SUSPENDED: "SUSPENDED", "rescued": "RESCUE", ERROR: "ERROR", DELETED: "DELETED",
              SOFT_DELETED: "SOFT_DELETED", "shelved": "SHELVED_OFFLOADED", "shelved_offloaded": "SHELVED_OFFLOADED"}


def status_of(vm_state: str, task_state: str | None) -> str:
    if vm_state == ACTIVE and task_state in _TASK_STATUS:
        return _TASK_STATUS[task_state]
    if vm_state == STOPPED and task_state in (REBOOTING, REBOOTING_HARD):
        return _TASK_STATUS[task_state]
    return _VM_STATUS.get(vm_state, "UNKNOWN")


# Server actions: the vm_states each is allowed from, the task_state it sets, the vm_state it ends in.
ACTIONS: dict[str, dict] = {
    "stop": {"from": (ACTIVE, ERROR), "task_state": POWERING_OFF, "to": STOPPED},
    "start": {"from": (STOPPED,), "task_state": POWERING_ON, "to": ACTIVE},
    "reboot": {"from": (ACTIVE,), "task_state": REBOOTING, "to": ACTIVE},
    "reboot_hard": {"from": (ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR), "task_state": REBOOTING_HARD,
                    "to": ACTIVE},
    "pause": {"from": (ACTIVE,), "task_state": "pausing", "to": PAUSED},
    "unpause": {"from": (PAUSED,), "task_state": "unpausing", "to": ACTIVE},
    "suspend": {"from": (ACTIVE,), "task_state": "suspending", "to": SUSPENDED},
    "resume": {"from": (SUSPENDED,), "task_state": "resuming", "to": ACTIVE},
}

POWER_AFTER = {STOPPED: PowerState.SHUTDOWN, ACTIVE: PowerState.RUNNING, PAUSED: PowerState.PAUSED,
               SUSPENDED: PowerState.SUSPENDED}

RESCUED, SHELVED, SHELVED_OFFLOADED, RESIZED = "rescued", "shelved", "shelved_offloaded", "resized"

# Actions of tasks/conductor/actions.py (same shape; "to" None keeps the vm_state the instance had).
MORE_ACTIONS: dict[str, dict] = {
    "rescue": {"from": (ACTIVE, STOPPED, ERROR), "task_state": "rescuing", "to": RESCUED},
    "unrescue": {"from": (RESCUED,), "task_state": "unrescuing", "to": ACTIVE},
    "rebuild": {"from": (ACTIVE, STOPPED, ERROR), "task_state": "rebuilding", "to": None},
    "snapshot": {"from": (ACTIVE, STOPPED, PAUSED, SUSPENDED), "task_state": "image_snapshot", "to": None},
    "backup": {"from": (ACTIVE, STOPPED, PAUSED, SUSPENDED), "task_state": "image_backup", "to": None},
    "soft_delete": {"from": (ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR, RESCUED), "task_state": "soft-deleting",
                    "to": SOFT_DELETED},
    "restore": {"from": (SOFT_DELETED,), "task_state": "restoring", "to": ACTIVE},
}
# Nova's instance-action names (os-instance-actions) where they differ from the internal action name.
ACTION_RECORD_NAMES = {"snapshot": "createImage", "backup": "createBackup", "soft_delete": "delete", "reboot_hard": "reboot"}
POWER_AFTER.update({RESCUED: PowerState.RUNNING, SOFT_DELETED: PowerState.SHUTDOWN})

MAX_TAGS = 50  # per server (Nova: instance.MAX_TAG_COUNT)
