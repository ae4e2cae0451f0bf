"""GET /servers query parameters per microversion: which filters a non-admin may use (2.5 ip6, 2.26 tags,
2.66 changes-before, 2.73 locked, 2.83 the instance-attribute filters), the 2.73 ``locked`` sort key, and 2.75's
400 for query parameters Nova does not know."""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import String, cast, false
from werkzeug.datastructures import MultiDict

from app.microversion import APIVersion
from core.errors import bad_request
from core.models import Instance

# Nova's query schema for the server list (2.1 .. 2.73); unknown names are ignored before 2.75 and 400 from it.
KNOWN = frozenset({
    "user_id", "project_id", "tenant_id", "launch_index", "image_ref", "image", "kernel_id", "ramdisk_id",
    "hostname", "key_name", "power_state", "vm_state", "task_state", "host", "node", "flavor", "reservation_id",
    "launched_at", "terminated_at", "availability_zone", "name", "display_name", "description",
    "display_description", "locked_by", "uuid", "root_device_name", "config_drive", "access_ip_v4", "access_ip_v6",
    "auto_disk_config", "progress", "sort_key", "sort_dir", "all_tenants", "soft_deleted", "deleted", "status",
    "changes-since", "ip", "ip6", "created_at", "limit", "marker", "tags", "tags-any", "not-tags", "not-tags-any",
    "changes-before", "locked"})
_JOINED = ("block_device_mapping", "services", "metadata", "system_metadata", "info_cache", "security_groups",
           "pci_devices")  # Nova's patternProperties: accepted, never filtered on

# Filters every user has (Nova's _get_server_search_options), and the ones each microversion adds.
_NON_ADMIN = {"2.1": ("reservation_id", "name", "status", "image", "flavor", "ip", "changes-since", "all_tenants"),
              "2.5": ("ip6",), "2.26": ("tags", "tags-any", "not-tags", "not-tags-any"),
              "2.66": ("changes-before",), "2.73": ("locked",),
              "2.83": ("availability_zone", "config_drive", "key_name", "created_at", "launched_at", "terminated_at",
                       "power_state", "task_state", "vm_state", "progress", "user_id")}
# Filters Stratus applies (on top of servers.py's name/status/image/flavor/reservation/tags/time ones).
_EXACT = {"availability_zone": Instance.availability_zone, "key_name": Instance.key_name,
          "user_id": Instance.user_id, "vm_state": Instance.vm_state, "task_state": Instance.task_state,
          "host": Instance.host, "node": Instance.node, "uuid": Instance.uuid, "hostname": Instance.hostname}
_INTEGER = {"power_state": Instance.power_state, "progress": Instance.progress,
            "launch_index": Instance.launch_index}
_CONTAINS = {"created_at": Instance.created_at, "launched_at": Instance.launched_at,
             "terminated_at": Instance.terminated_at}  # Nova matches these like a regex (SQL LIKE %value%)
_TRUE, _FALSE = ("true", "1", "yes", "on", "y", "t"), ("false", "0", "no", "off", "n", "f")


def parse_time(name: str, value: str) -> dt.datetime:
    """A time query parameter (changes-since, changes-before) as a naive UTC datetime; 400 if it is not one."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid input for query parameters {name}. Value: {value}. '{value}' is not a "
                          f"'date-time'") from None
    return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def check_known(args: MultiDict, v: APIVersion) -> None:
    """2.75: a query parameter outside Nova's schema is a 400 (before, Nova ignored it)."""
    if not v.matches("2.75"):
        return
    for name in args:
        if name not in KNOWN and not name.startswith(_JOINED):
            raise bad_request(f"Additional properties are not allowed ('{name}' was unexpected)")


def allowed(args: MultiDict, v: APIVersion, is_admin: bool) -> MultiDict:
    """The parameters this caller may filter with; Nova silently drops the others for non-admins."""
    if is_admin:
        return args
    names = {n for since, group in _NON_ADMIN.items() if v.matches(since) for n in group}
    names |= {"limit", "marker", "sort_key", "sort_dir", "deleted", "project_id", "tenant_id"}
    return MultiDict([(k, val) for k, val in args.items(multi=True) if k in names])


def _bool(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise bad_request(f"Invalid input for query parameters {name}. Value: {value}. Unrecognized value "
                      f"'{value}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', "
                      f"'true', 'y', 'yes'")


def conditions(args: MultiDict, v: APIVersion, is_admin: bool) -> list:
    """SQL conditions for the attribute filters (admins at any version, everyone from 2.83; locked from 2.73)."""
    conds = []
    for name, col in _EXACT.items():
        if name in args and (is_admin or name not in ("host", "node")):
            conds.append(col == args[name])
    for name, col in _INTEGER.items():
        if name in args:
            try:
                conds.append(col == int(args[name]))
            except ValueError:
                conds.append(false())  # Nova's filter matches nothing
    for name, col in _CONTAINS.items():
        if name in args:
            conds.append(cast(col, String).contains(args[name].replace("T", " ").rstrip("Z"), autoescape=True))
    if "config_drive" in args:
        wanted = _bool("config_drive", args["config_drive"])
        on = Instance.config_drive.in_(("True", "true", "1"))
        conds.append(on if wanted else ~on | Instance.config_drive.is_(None))
    if "locked" in args and v.matches("2.73"):
        conds.append(Instance.locked.is_(_bool("locked", args["locked"])))
    return conds


def ip_patterns(args: MultiDict) -> list[tuple[int, re.Pattern]]:
    """``ip`` / ``ip6``: regular expressions matched against the server's IPv4 / IPv6 addresses."""
    out = []
    for name, version in (("ip", 4), ("ip6", 6)):
        if name in args:
            try:
                out.append((version, re.compile(args[name])))
            except re.error:
                raise bad_request(f"Invalid regular expression for {name}: {args[name]}") from None
    return out


def sort_column(key: str, v: APIVersion):
    """Extra sort keys: ``locked`` from 2.73 and the instance columns Nova also sorts on."""
    extra = {"key_name": Instance.key_name, "user_id": Instance.user_id, "project_id": Instance.project_id,
             "progress": Instance.progress, "terminated_at": Instance.terminated_at, "node": Instance.node,
             "display_description": Instance.display_description, "launch_index": Instance.launch_index,
             "access_ip_v4": Instance.access_ip_v4, "access_ip_v6": Instance.access_ip_v6}
    if key == "locked" and v.matches("2.73"):
        return Instance.locked
    return extra.get(key)


# Sort keys Nova's schema accepts but ignores (2.1 .. 2.74): 400 from 2.75; ``locked`` is a real key from 2.73.
_IGNORED_SORT_KEYS = frozenset({
    "architecture", "cell_name", "cleaned", "default_ephemeral_device", "default_swap_device", "deleted",
    "deleted_at", "disable_terminate", "ephemeral_gb", "ephemeral_key_uuid", "id", "key_data", "launched_on",
    "locked", "memory_mb", "os_type", "reservation_id", "root_gb", "shutdown_terminate", "user_data", "vcpus",
    "vm_mode"})


def ignored_sort_key(key: str, v: APIVersion) -> bool:
    return key in _IGNORED_SORT_KEYS and not v.matches("2.75")
