"""Horizon's local_settings.py for a Stratus cloud (tools/dashboard copies it into Horizon's own venv).

Everything a deployment changes comes from the environment tools/dashboard exports:
STRATUS_DASHBOARD_KEYSTONE_URL (Stratus's Identity v3), STRATUS_DASHBOARD_STATE (secret key, static files),
STRATUS_DASHBOARD_CONSOLE_TYPE (the Console tab's: AUTO, the first of VNC, SPICE, RDP, SERIAL, MKS the cloud gives;
SERIAL for the serial console through Stratus's serial proxy in Horizon's own terminal page; NONE for no tab)."""
import os

from horizon.utils import secret_key

_STATE = os.environ.get("STRATUS_DASHBOARD_STATE") or os.path.join(os.path.dirname(__file__), "state")
os.makedirs(_STATE, exist_ok=True)

DEBUG = False
ALLOWED_HOSTS = ["*"]
SECRET_KEY = secret_key.generate_or_read_from_file(os.path.join(_STATE, ".secret_key_store"))
STATIC_ROOT = os.environ.get("STRATUS_DASHBOARD_STATIC") or os.path.join(_STATE, "static")
COMPRESS_OFFLINE = True
COMPRESS_ENABLED = True
# One server process (tools/dashboard): sessions and caches in its memory, no memcached to run.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"

# Keystone v3 at Stratus, one domain (Default), as `openstack` with the openrc tools/stratus-run writes.
OPENSTACK_KEYSTONE_URL = os.environ.get("STRATUS_DASHBOARD_KEYSTONE_URL", "http://127.0.0.1:8774/identity/v3")
OPENSTACK_API_VERSIONS = {"identity": 3, "image": 2, "compute": 2}
OPENSTACK_KEYSTONE_MULTIDOMAIN_SUPPORT = False
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = "Default"
OPENSTACK_KEYSTONE_DEFAULT_ROLE = "member"
OPENSTACK_ENDPOINT_TYPE = "publicURL"
# Stratus's Networking subset: one flat network, no routers, floating IPs or security groups (its extension list
# says so too; Horizon asks it).
OPENSTACK_NEUTRON_NETWORK = {"enable_router": False, "enable_quotas": True, "enable_distributed_router": False,
                             "enable_ha_router": False, "enable_fip_topology_check": False}
OPENSTACK_HYPERVISOR_FEATURES = {"can_set_mount_point": False, "can_set_password": False,
                                 "requires_keypair": False, "enable_quotas": True}
# Images are uploaded by the browser to Horizon, which sends them to Glance (no CORS on Stratus's Image API).
HORIZON_IMAGES_UPLOAD_MODE = "legacy"
CONSOLE_TYPE = os.environ.get("STRATUS_DASHBOARD_CONSOLE_TYPE", "AUTO").upper()
if CONSOLE_TYPE == "NONE":
    CONSOLE_TYPE = None
# The serial Console tab frames Horizon's own serial page (/project/instances/<id>/serial): Django's default
# X-Frame-Options DENY makes the browser refuse it (ERR_BLOCKED_BY_RESPONSE). SAMEORIGIN still keeps other sites
# from framing Horizon.
X_FRAME_OPTIONS = "SAMEORIGIN"
TIME_ZONE = "UTC"
SESSION_TIMEOUT = 3600

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"console": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"level": "INFO", "class": "logging.StreamHandler", "formatter": "console"}},
    "loggers": {name: {"handlers": ["console"], "level": "INFO", "propagate": False}
                for name in ("django", "horizon", "openstack_dashboard", "openstack_auth", "novaclient",
                             "keystoneclient", "glanceclient", "keystoneauth", "openstack")},
}
