"""The server actions of ``POST /servers/{id}/action``: the handler of each body key, and the schemas of the
arguments the OpenAPI document shows (a handler declares the schema it loads its argument with by
``@action_argument``). The view (app/compute/servers.py) checks the action's policy rule
(app.policy_names.ACTION_RULES) for the instance's project, then runs the handler: its response, or None for 202.
"""
from __future__ import annotations

from collections.abc import Callable

from flask import Response
from marshmallow import Schema

from app.compute import security_group_actions, server_actions, server_admin_actions, server_moves
from app.compute.console_urls import legacy_console_action
from app.compute.instances import start_action
from app.compute.schemas import LockSchema

Handler = Callable[[str, object], Response | tuple | None]

# Actions the conductor runs from the instance alone (their argument is ignored, as Nova's null): body key ->
# the conductor's action.
SIMPLE_ACTIONS = {"os-stop": "stop", "os-start": "start", "pause": "pause", "unpause": "unpause",
                  "suspend": "suspend", "resume": "resume"}
# nova-network's actions, never in Stratus; Nova removed them at 2.44 (404 from there, 400 before).
NOVA_NETWORK_ACTIONS = ("addFixedIp", "removeFixedIp", "addFloatingIp", "removeFloatingIp")


def _simple(action: str) -> Handler:
    def handler(server_id: str, args: object) -> None:
        start_action(server_id, action)
    return handler


ACTIONS: dict[str, Handler] = {
    **{name: _simple(action) for name, action in SIMPLE_ACTIONS.items()},
    "reboot": server_actions.reboot, "os-getConsoleOutput": server_actions.console_output,
    "lock": server_actions.lock, "unlock": server_actions.unlock,
    "os-getVNCConsole": legacy_console_action("vnc"), "os-getSPICEConsole": legacy_console_action("spice"),
    "os-getSerialConsole": legacy_console_action("serial"),
    "rescue": server_actions.rescue, "unrescue": server_actions.unrescue,
    "trigger_crash_dump": server_actions.trigger_crash_dump, "rebuild": server_actions.rebuild,
    "createImage": server_actions.create_image, "restore": server_actions.restore,
    "forceDelete": server_actions.force_delete,
    "resize": server_moves.resize, "confirmResize": server_moves.confirm_resize,
    "revertResize": server_moves.revert_resize, "migrate": server_moves.migrate,
    "os-migrateLive": server_moves.live_migrate, "evacuate": server_moves.evacuate, "shelve": server_moves.shelve,
    "shelveOffload": server_moves.shelve_offload, "unshelve": server_moves.unshelve,
    "os-resetState": server_admin_actions.reset_state, "createBackup": server_admin_actions.create_backup,
    "addSecurityGroup": security_group_actions.add_security_group,
    "removeSecurityGroup": security_group_actions.remove_security_group,
}
# The argument schemas the OpenAPI document shows (the other actions' arguments are documented as any value):
# the ones the handlers load with, and lock's (from 2.73 null or a reason, any value before; the handler loads it).
ARGUMENT_SCHEMAS: dict[str, type[Schema]] = {
    "lock": LockSchema,
    **{name: handler.argument_schema for name, handler in ACTIONS.items() if hasattr(handler, "argument_schema")}}
# Arguments documented by their schema only from a microversion on (any value before), and those that may be null.
ARGUMENT_SINCE: dict[str, str] = {"lock": server_actions.LOCK_REASON_SINCE}
NULLABLE_ARGUMENTS = frozenset({"lock"})
