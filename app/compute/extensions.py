"""/extensions: Nova's deprecated list of API extensions, for clients that still discover features by it
(``os_compute_api:extensions``, any authenticated user). Nova lists a fixed set; Stratus lists the entries of
that set it implements, each shown only while its evidence (a route of the app, or a server action) is served,
so the list cannot claim what Stratus does not do. Names, descriptions, namespace and date are Nova's."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.compute.actions import ACTIONS
from app.policy import enforce
from core.errors import not_found

bp = Blueprint("extensions", __name__)

_NAMESPACE = "http://docs.openstack.org/compute/ext/fake_xml"
_UPDATED = "2014-12-03T00:00:00Z"

# (alias, name, description, evidence kind ("route" rule or server "action"), evidence)
_KNOWN: tuple[tuple[str, str, str, str, str], ...] = (
    ('OS-DCF', 'DiskConfig', 'Disk Management Extension.', 'route', '/v2.1/servers'),
    ('OS-EXT-AZ', 'ExtendedAvailabilityZone',
     'Extended Availability Zone support.',
     'route', '/v2.1/os-availability-zone'),
    ('OS-EXT-IMG-SIZE', 'ImageSize', 'Adds image size to image listings.', 'route', '/v2.1/images'),
    ('OS-EXT-IPS', 'ExtendedIps', 'Adds type parameter to the ip list.', 'route', '/v2.1/servers'),
    ('OS-EXT-IPS-MAC', 'ExtendedIpsMac', 'Adds mac address parameter to the ip list.', 'route', '/v2.1/servers'),
    ('OS-EXT-SRV-ATTR', 'ExtendedServerAttributes', 'Extended Server Attributes support.', 'route', '/v2.1/servers'),
    ('OS-EXT-STS', 'ExtendedStatus', 'Extended Status support.', 'route', '/v2.1/servers'),
    ('OS-FLV-DISABLED', 'FlavorDisabled',
     'Support to show the disabled status of a flavor.',
     'route', '/v2.1/flavors'),
    ('OS-FLV-EXT-DATA', 'FlavorExtraData', 'Provide additional data for flavors.', 'route', '/v2.1/flavors'),
    ('OS-SCH-HNT', 'SchedulerHints', 'Pass arbitrary key/value pairs to the scheduler.', 'route', '/v2.1/servers'),
    ('OS-SRV-USG', 'ServerUsage', 'Adds launched_at and terminated_at on Servers.', 'route', '/v2.1/servers'),
    ('os-access-ips', 'AccessIPs', 'Access IPs support.', 'route', '/v2.1/servers'),
    ('os-admin-actions', 'AdminActions',
     'Enable admin-only server actions\n\n    Actions include: resetNetwork, injectNetworkInfo, os-resetState\n    ',
     'action', 'os-resetState'),
    ('os-aggregates', 'Aggregates', 'Admin-only aggregate administration.', 'route', '/v2.1/os-aggregates'),
    ('os-availability-zone', 'AvailabilityZone',
     '1. Add availability_zone to the Create Server API.\n       2. Add availability zones describing.\n    ',
     'route', '/v2.1/os-availability-zone'),
    ('os-config-drive', 'ConfigDrive', 'Config Drive Extension.', 'route', '/v2.1/servers'),
    ('os-console-auth-tokens', 'ConsoleAuthTokens',
     'Console token authentication support.',
     'route', '/v2.1/os-console-auth-tokens/<token>'),
    ('os-console-output', 'ConsoleOutput',
     'Console log output support, with tailing ability.',
     'action', 'os-getConsoleOutput'),
    ('os-create-backup', 'CreateBackup', 'Create a backup of a server.', 'action', 'createBackup'),
    ('os-deferred-delete', 'DeferredDelete', 'Instance deferred delete.', 'action', 'restore'),
    ('os-evacuate', 'Evacuate', 'Enables server evacuation.', 'action', 'evacuate'),
    ('os-extended-hypervisors', 'ExtendedHypervisors',
     'Extended hypervisors support.',
     'route', '/v2.1/os-hypervisors/detail'),
    ('os-extended-rescue-with-image', 'ExtendedRescueWithImage',
     'Allow the user to specify the image to use for rescue.',
     'action', 'rescue'),
    ('os-extended-services-delete', 'ExtendedServicesDelete',
     'Extended services deletion support.',
     'route', '/v2.1/os-services/<service_id>'),
    ('os-extended-status', 'ExtendedStatus', 'Extended Status support.', 'route', '/v2.1/servers'),
    ('os-flavor-access', 'FlavorAccess',
     'Flavor access support.',
     'route', '/v2.1/flavors/<flavor_id>/os-flavor-access'),
    ('os-flavor-extra-specs', 'FlavorExtraSpecs',
     'Flavors extra specs support.',
     'route', '/v2.1/flavors/<flavor_id>/os-extra_specs'),
    ('os-flavor-manage', 'FlavorManage', 'Flavor create/delete API support.', 'route', '/v2.1/flavors/<flavor_id>'),
    ('os-flavor-swap', 'FlavorSwap', 'Support to show the swap status of a flavor.', 'route', '/v2.1/flavors'),
    ('os-hosts', 'Hosts', 'Admin-only host administration.', 'route', '/v2.1/os-hosts'),
    ('os-hypervisor-status', 'HypervisorStatus', 'Show hypervisor status.', 'route', '/v2.1/os-hypervisors'),
    ('os-hypervisors', 'Hypervisors', 'Admin-only hypervisor administration.', 'route', '/v2.1/os-hypervisors'),
    ('os-instance-actions', 'InstanceActions',
     'View a log of actions and events taken on an instance.',
     'route', '/v2.1/servers/<server_id>/os-instance-actions'),
    ('os-instance_usage_audit_log', 'OSInstanceUsageAuditLog',
     'Admin-only Task Log Monitoring.',
     'route', '/v2.1/os-instance_usage_audit_log'),
    ('os-keypairs', 'Keypairs', 'Keypair Support.', 'route', '/v2.1/os-keypairs'),
    ('os-lock-server', 'LockServer', 'Enable lock/unlock server actions.', 'action', 'lock'),
    ('os-migrate-server', 'MigrateServer',
     'Enable migrate and live-migrate server actions.',
     'action', 'os-migrateLive'),
    ('os-migrations', 'Migrations', 'Provide data on migrations.', 'route', '/v2.1/os-migrations'),
    ('os-multiple-create', 'MultipleCreate',
     'Allow multiple create in the Create Server v2.1 API.',
     'route', '/v2.1/servers'),
    ('os-networks', 'Networks', 'Admin-only Network Management Extension.', 'route', '/v2.1/os-networks'),
    ('os-pause-server', 'PauseServer', 'Enable pause/unpause server actions.', 'action', 'pause'),
    ('os-quota-class-sets', 'QuotaClasses',
     'Quota classes management support.',
     'route', '/v2.1/os-quota-class-sets/<class_name>'),
    ('os-quota-sets', 'Quotas', 'Quotas management support.', 'route', '/v2.1/os-quota-sets/<project_id>'),
    ('os-rescue', 'Rescue', 'Instance rescue mode.', 'action', 'rescue'),
    ('os-server-diagnostics', 'ServerDiagnostics',
     'Allow Admins to view server diagnostics through server action.',
     'route', '/v2.1/servers/<server_id>/diagnostics'),
    ('os-server-group-quotas', 'ServerGroupQuotas',
     'Adds quota support to server groups.',
     'route', '/v2.1/os-server-groups'),
    ('os-server-groups', 'ServerGroups', 'Server group support.', 'route', '/v2.1/os-server-groups'),
    ('os-server-password', 'ServerPassword',
     'Server password support.',
     'route', '/v2.1/servers/<server_id>/os-server-password'),
    ('os-server-start-stop', 'ServerStartStop', 'Start/Stop instance compute API support.', 'action', 'os-start'),
    ('os-services', 'Services', 'Services support.', 'route', '/v2.1/os-services'),
    ('os-shelve', 'Shelve', 'Instance shelve mode.', 'action', 'shelve'),
    ('os-simple-tenant-usage', 'SimpleTenantUsage',
     'Simple tenant usage extension.',
     'route', '/v2.1/os-simple-tenant-usage'),
    ('os-suspend-server', 'SuspendServer', 'Enable suspend/resume server actions.', 'action', 'suspend'),
    ('os-used-limits', 'UsedLimits',
     'Provide data on limited resources that are being used.',
     'route', '/v2.1/limits'),
    ('os-user-data', 'UserData', 'Add user_data to the Create Server API.', 'route', '/v2.1/servers'),
    ('os-user-quotas', 'UserQuotas', 'Project user quota support.', 'route', '/v2.1/os-quota-sets/<project_id>'),
)


def implemented() -> list[dict]:
    rules = {rule.rule for rule in current_app.url_map.iter_rules()}
    return [{"alias": alias, "description": description, "links": [], "name": name, "namespace": _NAMESPACE,
              "updated": _UPDATED}
            for alias, name, description, kind, evidence in sorted(_KNOWN)
            if (evidence in rules if kind == "route" else evidence in ACTIONS)]


@bp.get("/extensions")
@enforce("authenticated", name="os_compute_api:extensions")
def list_extensions():
    return jsonify({"extensions": implemented()})


@bp.get("/extensions/<alias>")
@enforce("authenticated", name="os_compute_api:extensions")
def show_extension(alias: str):
    found = next((ext for ext in implemented() if ext["alias"] == alias), None)
    if found is None:
        raise not_found("The resource could not be found.")
    return jsonify({"extension": found})
