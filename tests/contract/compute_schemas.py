"""Which of Nova's published response schemas (tempest.lib.api_schema) governs each Compute endpoint Stratus serves.

A key is (HTTP method, Flask URL rule). Where tempest's service client picks its schema module by microversion,
the entry names that client (``Versioned``): its own ``schema_versions_info`` table decides, not a copy of it here.
Where the client always uses one module, ``Fixed`` names that module. Every route of the app is either here, in
``NO_SCHEMA`` (with the reason), or in ``NOT_COMPUTE`` (tests/unit/test_contract_oracle.py walks the url_map).
"""
from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Callable, Union

from tempest.lib.api_schema.response.compute.v2_1 import availability_zone as az_v21
from tempest.lib.api_schema.response.compute.v2_1 import flavors as flavors_v21
from tempest.lib.api_schema.response.compute.v2_1.parameter_types import links
from tempest.lib.api_schema.response.compute.v2_1 import flavors_access as flavor_access_v21
from tempest.lib.api_schema.response.compute.v2_1 import flavors_extra_specs as extra_specs_v21
from tempest.lib.api_schema.response.compute.v2_1 import extensions as extensions_v21
from tempest.lib.api_schema.response.compute.v2_1 import hosts as hosts_v21
from tempest.lib.api_schema.response.compute.v2_1 import security_groups as security_groups_v21
from tempest.lib.api_schema.response.compute.v2_1 import images as images_v21
from tempest.lib.api_schema.response.compute.v2_1 import instance_usage_audit_logs as audit_v21
from tempest.lib.api_schema.response.compute.v2_1 import servers as servers_v21
from tempest.lib.api_schema.response.compute.v2_1 import services as services_v21
from tempest.lib.api_schema.response.compute.v2_1 import tenant_usages as usages_v21
from tempest.lib.api_schema.response.compute.v2_1 import versions as versions_v21
from tempest.lib.api_schema.response.compute.v2_11 import services as services_v211
from tempest.lib.services.compute.aggregates_client import AggregatesClient
from tempest.lib.services.compute.flavors_client import FlavorsClient
from tempest.lib.services.compute.hypervisor_client import HypervisorClient
from tempest.lib.services.compute.images_client import ImagesClient
from tempest.lib.services.compute.keypairs_client import KeyPairsClient
from tempest.lib.services.compute.limits_client import LimitsClient
from tempest.lib.services.compute.migrations_client import MigrationsClient
from tempest.lib.services.compute.quota_classes_client import QuotaClassesClient
from tempest.lib.services.compute.quotas_client import QuotasClient
from tempest.lib.services.compute.server_groups_client import ServerGroupsClient
from tempest.lib.services.compute.servers_client import ServersClient
from tempest.lib.services.compute.services_client import ServicesClient


@dataclasses.dataclass(frozen=True)
class Versioned:
    """``client.schema_versions_info`` picks the module for the request's microversion; ``name`` is in it."""
    client: type
    name: str


@dataclasses.dataclass(frozen=True)
class Fixed:
    """The tempest client validates with ``module.name`` whatever the microversion."""
    module: ModuleType
    name: str


@dataclasses.dataclass(frozen=True)
class AdminPass:
    """Nova adds ``adminPass`` only when its ``enable_instance_password`` option is on (tempest's own switch):
    a body with the key must match ``with_pass``, one without it ``plain``."""
    plain: "Ref"
    with_pass: "Ref"


@dataclasses.dataclass(frozen=True)
class ByAction:
    """``POST .../action``: the schema depends on the action's name (the request body's only key)."""
    actions: dict[str, "Ref"]


@dataclasses.dataclass(frozen=True)
class Select:
    """A choice made from the recorded request (URL variables, microversion); ``why`` says which rule it follows."""
    choose: Callable[[dict], "Ref | None"]  # None: Nova's documented answer has no tempest schema
    why: str


@dataclasses.dataclass(frozen=True)
class Amended:
    """Where tempest's schema is narrower than what Nova documents and does (its own response schemas in
    nova/api/openstack/compute/schemas/), ``patch`` widens a copy of it from microversion ``since``; ``why`` cites
    Nova. Only for Nova's behaviour, never Stratus's."""
    ref: "Ref"
    since: str
    patch: Callable[[dict, dict], None]  # (a copy of the schema, the record)
    why: str


Ref = Union[Versioned, Fixed, AdminPass, ByAction, Select, Amended]

def version_tuple(text: str | None) -> tuple[int, int]:
    """"2.14" -> (2, 14); no microversion is 2.1 (tempest's rule for a request without one)."""
    major, minor = (text or "2.1").split(".")
    return int(major), int(minor)


_COMMON_ACTION = Fixed(servers_v21, "server_actions_common_schema")  # 202, no body
_V21 = "/v2.1"


def _services_put(record: dict) -> Ref:
    # Before 2.53 the id is a verb (PUT /os-services/enable ...); from 2.53 it is the service's UUID.
    return {"enable": Fixed(services_v21, "enable_disable_service"),
            "disable": Fixed(services_v21, "enable_disable_service"),
            "disable-log-reason": Fixed(services_v21, "disable_log_reason"),
            "force-down": Fixed(services_v211, "update_forced_down"),
            }.get(record["view_args"].get("service_id"), Versioned(ServicesClient, "update_service"))


def _evacuate(record: dict) -> Ref:
    # Nova returns adminPass below 2.14 (when enable_instance_password is on) and no body from 2.14.
    plain = Fixed(servers_v21, "evacuate_server")
    if version_tuple(record.get("microversion")) >= (2, 14):
        return plain
    return AdminPass(plain, Fixed(servers_v21, "evacuate_server_with_admin_pass"))


def _with_links(collection: str) -> Callable[[dict, dict], None]:
    def patch(schema: dict, record: dict) -> None:
        schema["response_body"]["properties"][f"{collection}_links"] = links
    return patch


# Nova 2.88 removed these from a hypervisor's detail and show (nova/api/openstack/compute/hypervisors.py) and added
# uptime; its schema (schemas/hypervisors.py, _hypervisor_detail_response_v288) keeps disk_available_least optional.
_GONE_AT_288 = ("cpu_info", "current_workload", "free_disk_gb", "free_ram_mb", "local_gb", "local_gb_used",
                "memory_mb", "memory_mb_used", "running_vms", "vcpus", "vcpus_used")


def _hypervisor_288(*path: str) -> Callable[[dict, dict], None]:
    def patch(schema: dict, record: dict) -> None:
        node = schema["response_body"]
        for key in path:
            node = node["properties"][key] if key != "items" else node["items"]
        for field in _GONE_AT_288:
            node["properties"].pop(field, None)
        node["required"] = [f for f in node["required"] if f not in _GONE_AT_288 + ("disk_available_least",)]
        node["properties"]["uptime"] = {"type": ["string", "null"]}
        node["required"].append("uptime")
    return patch


def _tag_already_there(schema: dict, record: dict) -> None:
    # Nova answers 204 without a Location when the server already has the tag (server_tags.py update), 201 with
    # one when it adds it; tempest's update_tag asks for a Location on both.
    if record["status"] == 204:
        schema.pop("response_header", None)


def _create_server(record: dict) -> Ref | None:
    # return_reservation_id answers {"reservation_id": ...}, which tempest's create_server leaves unvalidated.
    body = record.get("body")
    if isinstance(body, dict) and "reservation_id" in body:
        return None
    return AdminPass(Fixed(servers_v21, "create_server"), Fixed(servers_v21, "create_server_with_admin_pass"))


def _tenant_usage(record: dict) -> Ref | None:
    # Nova's simple_tenant_usage show answers {"tenant_usage": {}} for a project without usage in the period
    # (nova/api/openstack/compute/simple_tenant_usage.py, _show); tempest's schema only describes a used one.
    body = record.get("body")
    return None if body == {"tenant_usage": {}} else Fixed(usages_v21, "get_tenant_usage")


SERVER_ACTIONS: dict[str, Ref] = {
    **{name: _COMMON_ACTION for name in (
        "reboot", "resize", "revertResize", "os-stop", "os-start", "lock", "unlock", "suspend", "resume", "pause",
        "unpause", "os-resetState", "shelve", "unshelve", "shelveOffload", "migrate", "os-migrateLive",
        "forceDelete", "restore", "addSecurityGroup", "removeSecurityGroup", "resetNetwork", "injectNetworkInfo",
        "addFixedIp", "removeFixedIp", "changePassword", "unrescue")},
    "confirmResize": Fixed(servers_v21, "server_actions_confirm_resize"),
    "createBackup": Versioned(ServersClient, "create_backup"),
    "createImage": Versioned(ImagesClient, "create_image"),
    "rebuild": AdminPass(Versioned(ServersClient, "rebuild_server"),
                         Versioned(ServersClient, "rebuild_server_with_admin_pass")),
    "rescue": AdminPass(Fixed(servers_v21, "rescue_server"), Fixed(servers_v21, "rescue_server_with_admin_pass")),
    "evacuate": Select(_evacuate, "adminPass below 2.14, no body from 2.14 (tempest's evacuate_server)"),
    "os-getConsoleOutput": Fixed(servers_v21, "get_console_output"),
    "os-getVNCConsole": Fixed(servers_v21, "get_vnc_console"),
}

ENDPOINTS: dict[tuple[str, str], Ref] = {
    # versions (tempest's VersionsClient)
    ("GET", "/"): Fixed(versions_v21, "list_versions"),
    **{("GET", rule): Fixed(versions_v21, "get_one_version") for rule in ("/v2", "/v2/", "/v2.1", "/v2.1/")},
    # servers
    ("GET", f"{_V21}/servers"): Versioned(ServersClient, "list_servers"),
    ("GET", f"{_V21}/servers/detail"): Versioned(ServersClient, "list_servers_detail"),
    ("POST", f"{_V21}/servers"): Select(_create_server, "reservation_id answers are not validated by tempest"),
    ("GET", f"{_V21}/servers/<server_id>"): Versioned(ServersClient, "get_server"),
    ("PUT", f"{_V21}/servers/<server_id>"): Versioned(ServersClient, "update_server"),
    ("DELETE", f"{_V21}/servers/<server_id>"): Fixed(servers_v21, "delete_server"),
    ("POST", f"{_V21}/servers/<server_id>/action"): ByAction(SERVER_ACTIONS),
    ("GET", f"{_V21}/servers/<server_id>/os-server-password"): Fixed(servers_v21, "show_password"),
    ("GET", f"{_V21}/servers/<server_id>/os-security-groups"):
        Fixed(security_groups_v21, "list_security_groups"),
    ("DELETE", f"{_V21}/servers/<server_id>/os-server-password"):
        Fixed(servers_v21, "server_actions_delete_password"),
    ("GET", f"{_V21}/servers/<server_id>/diagnostics"): Versioned(ServersClient, "show_server_diagnostics"),
    ("GET", f"{_V21}/servers/<server_id>/metadata"): Fixed(servers_v21, "list_server_metadata"),
    ("POST", f"{_V21}/servers/<server_id>/metadata"): Fixed(servers_v21, "update_server_metadata"),
    ("PUT", f"{_V21}/servers/<server_id>/metadata"): Fixed(servers_v21, "set_server_metadata"),
    ("GET", f"{_V21}/servers/<server_id>/metadata/<key>"): Fixed(servers_v21, "set_show_server_metadata_item"),
    ("PUT", f"{_V21}/servers/<server_id>/metadata/<key>"): Fixed(servers_v21, "set_show_server_metadata_item"),
    ("DELETE", f"{_V21}/servers/<server_id>/metadata/<key>"): Fixed(servers_v21, "delete_server_metadata_item"),
    ("GET", f"{_V21}/servers/<server_id>/migrations"): Versioned(ServersClient, "list_live_migrations"),
    ("POST", f"{_V21}/servers/<server_id>/migrations/<migration_id>/action"):
        ByAction({"force_complete": _COMMON_ACTION}),  # tempest's later modules lack this name: it is v2_1's
    ("GET", f"{_V21}/servers/<server_id>/os-instance-actions"): Versioned(ServersClient, "list_instance_actions"),
    ("GET", f"{_V21}/servers/<server_id>/os-instance-actions/<request_id>"):
        Versioned(ServersClient, "show_instance_action"),
    ("POST", f"{_V21}/servers/<server_id>/remote-consoles"): Versioned(ServersClient, "get_remote_consoles"),
    ("GET", f"{_V21}/servers/<server_id>/tags"): Versioned(ServersClient, "list_tags"),
    ("GET", f"{_V21}/servers/<server_id>/os-volume_attachments"): Versioned(ServersClient,
                                                                          "list_volume_attachments"),
    ("GET", f"{_V21}/servers/<server_id>/os-volume_attachments/<volume_id>"): Versioned(
        ServersClient, "show_volume_attachment"),
    ("PUT", f"{_V21}/servers/<server_id>/tags"): Versioned(ServersClient, "update_all_tags"),
    ("DELETE", f"{_V21}/servers/<server_id>/tags"): Versioned(ServersClient, "delete_all_tags"),
    ("GET", f"{_V21}/servers/<server_id>/tags/<tag>"): Versioned(ServersClient, "check_tag_existence"),
    ("PUT", f"{_V21}/servers/<server_id>/tags/<tag>"): Amended(
        Versioned(ServersClient, "update_tag"), "2.26", _tag_already_there,
        "Nova's 204 for a tag the server already has carries no Location"),
    ("DELETE", f"{_V21}/servers/<server_id>/tags/<tag>"): Versioned(ServersClient, "delete_tag"),
    # flavors, extra specs, access
    ("GET", f"{_V21}/flavors"): Versioned(FlavorsClient, "list_flavors"),
    ("GET", f"{_V21}/flavors/detail"): Versioned(FlavorsClient, "list_flavors_details"),
    ("POST", f"{_V21}/flavors"): Versioned(FlavorsClient, "create_update_get_flavor_details"),
    ("GET", f"{_V21}/flavors/<flavor_id>"): Versioned(FlavorsClient, "create_update_get_flavor_details"),
    ("PUT", f"{_V21}/flavors/<flavor_id>"): Versioned(FlavorsClient, "create_update_get_flavor_details"),
    ("DELETE", f"{_V21}/flavors/<flavor_id>"): Fixed(flavors_v21, "delete_flavor"),
    ("POST", f"{_V21}/flavors/<flavor_id>/action"): ByAction({
        name: Fixed(flavor_access_v21, "add_remove_list_flavor_access")
        for name in ("addTenantAccess", "removeTenantAccess")}),
    ("GET", f"{_V21}/flavors/<flavor_id>/os-flavor-access"):
        Fixed(flavor_access_v21, "add_remove_list_flavor_access"),
    ("GET", f"{_V21}/flavors/<flavor_id>/os-extra_specs"): Fixed(extra_specs_v21, "set_get_flavor_extra_specs"),
    ("POST", f"{_V21}/flavors/<flavor_id>/os-extra_specs"): Fixed(extra_specs_v21, "set_get_flavor_extra_specs"),
    ("GET", f"{_V21}/flavors/<flavor_id>/os-extra_specs/<key>"):
        Fixed(extra_specs_v21, "set_get_flavor_extra_specs_key"),
    ("PUT", f"{_V21}/flavors/<flavor_id>/os-extra_specs/<key>"):
        Fixed(extra_specs_v21, "set_get_flavor_extra_specs_key"),
    ("DELETE", f"{_V21}/flavors/<flavor_id>/os-extra_specs/<key>"):
        Fixed(extra_specs_v21, "unset_flavor_extra_specs"),
    # key pairs, limits, availability zones
    ("GET", f"{_V21}/os-keypairs"): Amended(
        Versioned(KeyPairsClient, "list_keypairs"), "2.35", _with_links("keypairs"),
        "Nova pages key pairs from 2.35 and adds keypairs_links (schemas/keypairs.py index_response_v235)"),
    ("POST", f"{_V21}/os-keypairs"): Versioned(KeyPairsClient, "create_keypair"),
    ("GET", f"{_V21}/os-keypairs/<name>"): Versioned(KeyPairsClient, "get_keypair"),
    ("DELETE", f"{_V21}/os-keypairs/<name>"): Versioned(KeyPairsClient, "delete_keypair"),
    ("GET", f"{_V21}/limits"): Versioned(LimitsClient, "get_limit"),
    ("GET", f"{_V21}/os-availability-zone"): Fixed(az_v21, "list_availability_zone_list"),
    ("GET", f"{_V21}/os-availability-zone/detail"): Fixed(az_v21, "list_availability_zone_list_detail"),
    # aggregates
    ("GET", f"{_V21}/os-aggregates"): Versioned(AggregatesClient, "list_aggregates"),
    ("POST", f"{_V21}/os-aggregates"): Versioned(AggregatesClient, "create_aggregate"),
    ("GET", f"{_V21}/os-aggregates/<aggregate_id>"): Versioned(AggregatesClient, "get_aggregate"),
    ("PUT", f"{_V21}/os-aggregates/<aggregate_id>"): Versioned(AggregatesClient, "update_aggregate"),
    ("DELETE", f"{_V21}/os-aggregates/<aggregate_id>"): Versioned(AggregatesClient, "delete_aggregate"),
    ("POST", f"{_V21}/os-aggregates/<aggregate_id>/action"): ByAction({
        "add_host": Versioned(AggregatesClient, "aggregate_add_remove_host"),
        "remove_host": Versioned(AggregatesClient, "aggregate_add_remove_host"),
        "set_metadata": Versioned(AggregatesClient, "aggregate_set_metadata")}),
    # hypervisors (tempest's list_hypervisors validates the plain list with list_search_hypervisors)
    ("GET", f"{_V21}/os-hypervisors"): Versioned(HypervisorClient, "list_search_hypervisors"),
    ("GET", f"{_V21}/os-hypervisors/detail"): Amended(
        Versioned(HypervisorClient, "list_hypervisors_detail"), "2.88", _hypervisor_288("hypervisors", "items"),
        "tempest has no 2.88 hypervisor schema; Nova's detail_response_v288 drops the usage fields, adds uptime"),
    ("GET", f"{_V21}/os-hypervisors/<hypervisor_id>"): Amended(
        Versioned(HypervisorClient, "get_hypervisor"), "2.88", _hypervisor_288("hypervisor"),
        "tempest has no 2.88 hypervisor schema; Nova's show_response_v288 drops the usage fields, adds uptime"),
    ("GET", f"{_V21}/os-hypervisors/<pattern>/search"): Versioned(HypervisorClient, "list_search_hypervisors"),
    ("GET", f"{_V21}/os-hypervisors/<pattern>/servers"): Versioned(HypervisorClient, "get_hypervisors_servers"),
    ("GET", f"{_V21}/os-hypervisors/statistics"): Versioned(HypervisorClient, "get_hypervisor_statistics"),
    ("GET", f"{_V21}/os-hypervisors/<hypervisor_id>/uptime"): Versioned(HypervisorClient, "get_hypervisor_uptime"),
    # services, migrations, usage
    ("GET", f"{_V21}/os-services"): Versioned(ServicesClient, "list_services"),
    ("PUT", f"{_V21}/os-services/<service_id>"): Select(_services_put, "verbs before 2.53, the UUID from 2.53"),
    ("GET", f"{_V21}/os-migrations"): Amended(
        Versioned(MigrationsClient, "list_migrations"), "2.59", _with_links("migrations"),
        "Nova pages migrations from 2.59 and adds migrations_links (schemas/migrations.py index_response_v259)"),
    ("GET", f"{_V21}/extensions"): Fixed(extensions_v21, "list_extensions"),
    # the image proxy (until 2.35)
    ("GET", f"{_V21}/images"): Fixed(images_v21, "list_images"),
    ("GET", f"{_V21}/images/detail"): Fixed(images_v21, "list_images_details"),
    ("GET", f"{_V21}/images/<image_id>"): Fixed(images_v21, "get_image"),
    ("DELETE", f"{_V21}/images/<image_id>"): Fixed(images_v21, "delete"),
    ("GET", f"{_V21}/images/<image_id>/metadata"): Fixed(images_v21, "image_metadata"),
    ("POST", f"{_V21}/images/<image_id>/metadata"): Fixed(images_v21, "image_metadata"),
    ("PUT", f"{_V21}/images/<image_id>/metadata"): Fixed(images_v21, "image_metadata"),
    ("GET", f"{_V21}/images/<image_id>/metadata/<key>"): Fixed(images_v21, "image_meta_item"),
    ("PUT", f"{_V21}/images/<image_id>/metadata/<key>"): Fixed(images_v21, "image_meta_item"),
    ("DELETE", f"{_V21}/images/<image_id>/metadata/<key>"): Fixed(images_v21, "delete"),
    ("GET", f"{_V21}/os-hosts"): Fixed(hosts_v21, "list_hosts"),
    ("GET", f"{_V21}/os-hosts/<host_name>"): Fixed(hosts_v21, "get_host_detail"),
    ("PUT", f"{_V21}/os-hosts/<host_name>"): Fixed(hosts_v21, "update_host"),
    ("GET", f"{_V21}/os-hosts/<host_name>/startup"): Fixed(hosts_v21, "startup_host"),
    ("GET", f"{_V21}/os-hosts/<host_name>/shutdown"): Fixed(hosts_v21, "shutdown_host"),
    ("GET", f"{_V21}/os-hosts/<host_name>/reboot"): Fixed(hosts_v21, "reboot_host"),
    ("GET", f"{_V21}/os-instance_usage_audit_log"): Fixed(audit_v21, "list_instance_usage_audit_log"),
    ("GET", f"{_V21}/os-instance_usage_audit_log/<before_timestamp>"):
        Fixed(audit_v21, "get_instance_usage_audit_log"),
    ("GET", f"{_V21}/os-simple-tenant-usage"): Fixed(usages_v21, "list_tenant_usage"),
    ("GET", f"{_V21}/os-simple-tenant-usage/<tenant_id>"): Select(_tenant_usage, "Nova's {} for an unused project"),
    # quotas
    ("GET", f"{_V21}/os-quota-sets/<project_id>"): Versioned(QuotasClient, "get_quota_set"),
    ("GET", f"{_V21}/os-quota-sets/<project_id>/detail"): Versioned(QuotasClient, "get_quota_set_details"),
    ("GET", f"{_V21}/os-quota-sets/<project_id>/defaults"): Versioned(QuotasClient, "get_quota_set"),
    ("PUT", f"{_V21}/os-quota-sets/<project_id>"): Versioned(QuotasClient, "update_quota_set"),
    ("DELETE", f"{_V21}/os-quota-sets/<project_id>"): Versioned(QuotasClient, "delete_quota"),
    ("GET", f"{_V21}/os-quota-class-sets/<class_name>"): Versioned(QuotaClassesClient, "get_quota_class_set"),
    ("PUT", f"{_V21}/os-quota-class-sets/<class_name>"): Versioned(QuotaClassesClient, "update_quota_class_set"),
    # server groups
    ("GET", f"{_V21}/os-server-groups"): Versioned(ServerGroupsClient, "list_server_groups"),
    ("POST", f"{_V21}/os-server-groups"): Versioned(ServerGroupsClient, "create_show_server_group"),
    ("GET", f"{_V21}/os-server-groups/<group_id>"): Versioned(ServerGroupsClient, "create_show_server_group"),
    ("DELETE", f"{_V21}/os-server-groups/<group_id>"): Versioned(ServerGroupsClient, "delete_server_group"),
}

# Compute endpoints Stratus serves for which tempest publishes no response schema (no client method validates).
NO_SCHEMA: dict[tuple[str, str], str] = {
    ("GET", f"{_V21}/extensions/<alias>"): "tempest's ExtensionsClient.show_extension validates no schema",
    ("POST", f"{_V21}/os-aggregates/<aggregate_id>/images"): "tempest has no aggregate image-cache client (2.81)",
    ("GET", f"{_V21}/os-console-auth-tokens/<token>"):
        "tempest's console_auth_tokens schema exists only from 2.99 (v2_99), beyond Stratus's 2.96",
    ("GET", f"{_V21}/os-networks"): "tempest's NetworksClient validates no schema (nova-network proxy)",
    ("GET", f"{_V21}/os-networks/<network_id>"): "tempest's NetworksClient validates no schema",
    ("DELETE", f"{_V21}/os-services/<service_id>"): "tempest's ServicesClient has no delete",
    ("GET", f"{_V21}/servers/<server_id>/migrations/<migration_id>"): "tempest has no show-server-migration",
    ("DELETE", f"{_V21}/servers/<server_id>/migrations/<migration_id>"): "tempest has no abort-live-migration",
}
# Server actions Stratus takes that tempest's ServersClient has no schema for.
NO_SCHEMA_ACTIONS: dict[str, str] = {
    "os-getSPICEConsole": "tempest's client knows only os-getVNCConsole",
    "os-getRDPConsole": "tempest's client knows only os-getVNCConsole",
    "os-getSerialConsole": "tempest's client knows only os-getVNCConsole",
    "trigger_crash_dump": "tempest's ServersClient has no trigger_crash_dump",
}

# Not Compute: Identity v3 and Image v2 (tempest 47 publishes no response schemas for them, only Compute's and
# Block Storage's), the OpenAPI document and static files. Checked by prefix.
NOT_COMPUTE_PREFIXES: dict[str, str] = {
    "/identity": "Keystone: tempest publishes no identity v3 response schemas",
    "/image": "Glance: tempest publishes no image v2 response schemas",
    "/placement": "Placement: tempest publishes no placement response schemas (tests/unit/test_placement.py checks its shapes)",
    "/networking": "Neutron: tempest publishes no network response schemas (tests/unit/test_network_api.py checks "
                   "its shapes)",
    "/openapi.json": "Stratus's own OpenAPI document",
    "/static/": "static files",
}


def not_compute(rule: str) -> str | None:
    return next((why for prefix, why in NOT_COMPUTE_PREFIXES.items() if rule.startswith(prefix)), None)
