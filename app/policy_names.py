"""Nova's policy names for endpoints whose views declare only a level (``@enforce("project_member_api")``), and
for the server actions (``POST /servers/{id}/action``), with Nova's defaults.

Endpoint → (rule name, default level); action → (rule name, default level). A policy file may override these
names like any other. Plain data (app.policy registers the tables at start-up), so Flask-free modules may name a
rule.
"""
from __future__ import annotations

_S = "os_compute_api:servers"
_MEMBER, _READER, _ADMIN = "project_member_api", "project_reader_api", "admin_api"
_MANAGER = "project_manager_api"  # Nova 2025.1: a project manager moves its servers, an admin picks the host

ENDPOINT_RULES: dict[str, tuple[str, str]] = {
    "servers.list_servers": (f"{_S}:index", _READER),
    "servers.list_servers_detail": (f"{_S}:detail", _READER),
    "servers.show_server": (f"{_S}:show", _READER),
    "servers.create_server": (f"{_S}:create", _MEMBER),
    "servers.update_server": (f"{_S}:update", _MEMBER),
    "servers.delete_server": (f"{_S}:delete", _MEMBER),
    "server_password.show_password": ("os_compute_api:os-server-password:show", _READER),
    "server_password.clear_password": ("os_compute_api:os-server-password:clear", _MEMBER),
    "usage_audit_log.list_audit_logs": ("os_compute_api:os-instance-usage-audit-log:list", _ADMIN),
    "usage_audit_log.show_audit_log": ("os_compute_api:os-instance-usage-audit-log:show", _ADMIN),
    "server_diagnostics.diagnostics": ("os_compute_api:os-server-diagnostics", _ADMIN),
    "server_metadata.index": ("os_compute_api:server-metadata:index", _READER),
    "server_metadata.show": ("os_compute_api:server-metadata:show", _READER),
    "server_metadata.create": ("os_compute_api:server-metadata:create", _MEMBER),
    "server_metadata.update_all": ("os_compute_api:server-metadata:update_all", _MEMBER),
    "server_metadata.update_key": ("os_compute_api:server-metadata:update", _MEMBER),
    "server_metadata.delete_key": ("os_compute_api:server-metadata:delete", _MEMBER),
    "server_tags.index": ("os_compute_api:os-server-tags:index", _READER),
    "server_tags.show": ("os_compute_api:os-server-tags:show", _READER),
    "server_tags.update": ("os_compute_api:os-server-tags:update", _MEMBER),
    "server_tags.update_all": ("os_compute_api:os-server-tags:update_all", _MEMBER),
    "server_tags.delete": ("os_compute_api:os-server-tags:delete", _MEMBER),
    "server_tags.delete_all": ("os_compute_api:os-server-tags:delete_all", _MEMBER),
    "server_groups.list_server_groups": ("os_compute_api:os-server-groups:index", _READER),
    "server_groups.show_server_group": ("os_compute_api:os-server-groups:show", _READER),
    "server_groups.create_server_group": ("os_compute_api:os-server-groups:create", _MEMBER),
    "server_groups.delete_server_group": ("os_compute_api:os-server-groups:delete", _MEMBER),
    "keypairs.list_keypairs": ("os_compute_api:os-keypairs:index", "admin_or_owner"),
    "keypairs.show_keypair": ("os_compute_api:os-keypairs:show", "admin_or_owner"),
    "keypairs.create_keypair": ("os_compute_api:os-keypairs:create", "admin_or_owner"),
    "keypairs.delete_keypair": ("os_compute_api:os-keypairs:delete", "admin_or_owner"),
    "instance_actions.list_actions": ("os_compute_api:os-instance-actions:list", _READER),
    "instance_actions.show_action": ("os_compute_api:os-instance-actions:show", _READER),
    "security_groups.list_server_security_groups": ("os_compute_api:os-security-groups:list", _READER),
    "networks.list_networks": ("os_compute_api:os-networks:list", _READER),
    "networks.show_network": ("os_compute_api:os-networks:view", _READER),
    "consoles.remote_consoles": ("os_compute_api:os-remote-consoles", _MEMBER),
    "limits.show_limits": ("os_compute_api:limits", _READER),
    "quotas.show_quota_set_defaults": ("os_compute_api:os-quota-sets:defaults", "authenticated"),
    "quotas.show_quota_class_set": ("os_compute_api:os-quota-class-sets:show", _ADMIN),
    "quotas.update_quota_class_set": ("os_compute_api:os-quota-class-sets:update", _ADMIN),
}

# Sub-rules checked inside views when a request asks for more than the endpoint's rule allows.
SUB_RULES: dict[str, tuple[str, str]] = {
    "requested_destination": ("compute:servers:create:requested_destination", _ADMIN),
    "forced_host": ("os_compute_api:servers:create:forced_host", _ADMIN),
    "limits_other_project": ("os_compute_api:limits:other_project", _ADMIN),
    "server_groups_all_projects": ("os_compute_api:os-server-groups:index:all_projects", _ADMIN),
    "migrate_host": ("os_compute_api:os-migrate-server:migrate:host", _ADMIN),
    "migrate_live_host": ("os_compute_api:os-migrate-server:migrate_live:host", _ADMIN),
    "unshelve_to_host": ("os_compute_api:os-shelve:unshelve_to_host", _ADMIN),
    "unlock_override": ("os_compute_api:os-lock-server:unlock:unlock_override", _ADMIN),
}

# Server action (request body key) → Nova's rule; the dispatcher checks it with the instance's project as target.
ACTION_RULES: dict[str, tuple[str, str]] = {
    "os-start": (f"{_S}:start", _MEMBER),
    "os-stop": (f"{_S}:stop", _MEMBER),
    "reboot": (f"{_S}:reboot", _MEMBER),
    "pause": ("os_compute_api:os-pause-server:pause", _MEMBER),
    "unpause": ("os_compute_api:os-pause-server:unpause", _MEMBER),
    "suspend": ("os_compute_api:os-suspend-server:suspend", _MEMBER),
    "resume": ("os_compute_api:os-suspend-server:resume", _MEMBER),
    "lock": ("os_compute_api:os-lock-server:lock", _MEMBER),
    "unlock": ("os_compute_api:os-lock-server:unlock", _MEMBER),
    "os-getConsoleOutput": ("os_compute_api:os-console-output", _MEMBER),
    "os-getVNCConsole": ("os_compute_api:os-remote-consoles", _MEMBER),
    "os-getSPICEConsole": ("os_compute_api:os-remote-consoles", _MEMBER),
    "os-getSerialConsole": ("os_compute_api:os-remote-consoles", _MEMBER),
    "rescue": ("os_compute_api:os-rescue", _MEMBER),
    "unrescue": ("os_compute_api:os-unrescue", _MEMBER),
    "trigger_crash_dump": (f"{_S}:trigger_crash_dump", _MEMBER),
    "rebuild": (f"{_S}:rebuild", _MEMBER),
    "createImage": (f"{_S}:create_image", _MEMBER),
    "restore": ("os_compute_api:os-deferred-delete:restore", _MEMBER),
    "forceDelete": ("os_compute_api:os-deferred-delete:force", _MEMBER),
    "resize": (f"{_S}:resize", _MEMBER),
    "confirmResize": (f"{_S}:confirm_resize", _MEMBER),
    "revertResize": (f"{_S}:revert_resize", _MEMBER),
    "migrate": ("os_compute_api:os-migrate-server:migrate", _MANAGER),
    "os-migrateLive": ("os_compute_api:os-migrate-server:migrate_live", _MANAGER),
    "evacuate": ("os_compute_api:os-evacuate", _ADMIN),
    "shelve": ("os_compute_api:os-shelve:shelve", _MEMBER),
    "shelveOffload": ("os_compute_api:os-shelve:shelve_offload", _ADMIN),
    "unshelve": ("os_compute_api:os-shelve:unshelve", _MEMBER),
    "os-resetState": ("os_compute_api:os-admin-actions:reset_state", _ADMIN),
    "createBackup": ("os_compute_api:os-create-backup", _MEMBER),
    "addSecurityGroup": ("os_compute_api:os-security-groups:add", _MEMBER),
    "removeSecurityGroup": ("os_compute_api:os-security-groups:remove", _MEMBER),
}


def sub_rule(key: str) -> str:
    return SUB_RULES[key][0]


# Glance's policy action per Image endpoint: its 403 names the action ("You are not authorized to complete
# get_images action.", glance.common.exception.Forbidden).
GLANCE_ACTIONS: dict[str, str] = {
    "image.list_images": "get_images", "image.show_image": "get_image", "image.create_image": "add_image",
    "image.update_image": "modify_image", "image.delete_image": "delete_image",
    "image.upload_image": "upload_image", "image.download_image": "download_image",
}
