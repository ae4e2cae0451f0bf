"""Nova's power_state values (nova/compute/power_state.py): what a hypervisor says of a guest, shown in the API
as ``OS-EXT-STS:power_state``."""
from __future__ import annotations


class PowerState:
    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7
