"""Nova's policy names for endpoints whose views declare only a level (``@enforce("project_member_api")``).

Endpoint → (rule name, default level). A policy file may override these names like any other.
"""
from __future__ import annotations

ENDPOINT_RULES: dict[str, tuple[str, str]] = {
    "servers.list_servers": ("os_compute_api:servers:index", "project_reader_api"),
    "servers.list_servers_detail": ("os_compute_api:servers:detail", "project_reader_api"),
    "servers.show_server": ("os_compute_api:servers:show", "project_reader_api"),
    "servers.create_server": ("os_compute_api:servers:create", "project_member_api"),
    "servers.update_server": ("os_compute_api:servers:update", "project_member_api"),
    "servers.delete_server": ("os_compute_api:servers:delete", "project_member_api"),
    "keypairs.list_keypairs": ("os_compute_api:os-keypairs:index", "authenticated"),
    "keypairs.show_keypair": ("os_compute_api:os-keypairs:show", "authenticated"),
    "keypairs.create_keypair": ("os_compute_api:os-keypairs:create", "authenticated"),
    "keypairs.delete_keypair": ("os_compute_api:os-keypairs:delete", "authenticated"),
    "instance_actions.list_actions": ("os_compute_api:os-instance-actions:list", "project_reader_api"),
    "instance_actions.show_action": ("os_compute_api:os-instance-actions:show", "project_reader_api"),
    "networks.list_networks": ("os_compute_api:os-networks:list", "project_reader_api"),
    "networks.show_network": ("os_compute_api:os-networks:view", "project_reader_api"),
    "consoles.remote_consoles": ("os_compute_api:os-remote-consoles", "project_member_api"),
    "misc.limits": ("os_compute_api:limits", "project_reader_api"),
}


def register_all() -> None:
    from app.policy import register

    for name, level in ENDPOINT_RULES.values():
        register(name, level)
