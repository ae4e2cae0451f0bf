"""Server bodies carry exactly the fields of the negotiated microversion (Nova's api-ref is the checklist)."""
from __future__ import annotations

import datetime as dt

import pytest

from app.compute.views import ServerView
from app.context import RequestContext
from app.microversion import APIVersion
from core.models import Instance

BASE_KEYS = {"id", "name", "status", "tenant_id", "user_id", "metadata", "hostId", "image", "flavor", "created",
             "updated", "addresses", "accessIPv4", "accessIPv6", "links", "OS-DCF:diskConfig", "progress",
             "OS-EXT-AZ:availability_zone", "config_drive", "key_name", "OS-SRV-USG:launched_at",
             "OS-SRV-USG:terminated_at", "OS-EXT-STS:task_state", "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state",
             "os-extended-volumes:volumes_attached"}
ADMIN_21 = {"OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:instance_name", "OS-EXT-SRV-ATTR:hypervisor_hostname"}
ADMIN_23 = {"OS-EXT-SRV-ATTR:reservation_id", "OS-EXT-SRV-ATTR:launch_index", "OS-EXT-SRV-ATTR:hostname",
            "OS-EXT-SRV-ATTR:kernel_id", "OS-EXT-SRV-ATTR:ramdisk_id", "OS-EXT-SRV-ATTR:root_device_name",
            "OS-EXT-SRV-ATTR:user_data"}


def instance() -> Instance:
    now = dt.datetime(2026, 1, 1)
    return Instance(id=7, uuid="5d0c7c8e-0000-4000-8000-000000000001", display_name="vm", hostname="vm",
                    project_id="p1", user_id="u1", image_ref="5d0c7c8e-0000-4000-8000-0000000000aa",
                    flavor_snapshot={"id": "42", "name": "m1.nano", "vcpus": 1, "ram": 128, "disk": 1,
                                     "ephemeral": 0, "swap": 0, "extra_specs": {}},
                    vm_state="active", task_state=None, power_state=1, host="h1", node="h1",
                    availability_zone="nova", metadata_items={}, reservation_id="r-1", launch_index=0,
                    created_at=now, updated_at=now, launched_at=now, locked=False, progress=0)


def server_detail(inst: Instance, version: APIVersion, context: RequestContext) -> dict:
    return ServerView(version, context).body(inst)


def ctx(admin: bool) -> RequestContext:
    return RequestContext("u1", "user", "p1", "proj", ("admin", "member") if admin else ("member",), "req-1")


@pytest.fixture
def request_ctx(app):
    with app.test_request_context("/v2.1/servers/x"):
        yield


@pytest.mark.parametrize("version,admin,extra", [
    ("2.1", False, set()),
    ("2.1", True, ADMIN_21),
    ("2.3", True, ADMIN_21 | ADMIN_23),
    ("2.9", False, {"locked"}),
    ("2.16", True, ADMIN_21 | ADMIN_23 | {"locked", "host_status"}),
    ("2.26", False, {"locked", "description", "tags"}),
    ("2.73", False, {"locked", "description", "tags", "trusted_image_certificates", "locked_reason"}),
    ("2.90", False, {"locked", "description", "tags", "trusted_image_certificates", "locked_reason",
                     "OS-EXT-SRV-ATTR:hostname"}),
    ("2.96", False, {"locked", "description", "tags", "trusted_image_certificates", "locked_reason",
                     "OS-EXT-SRV-ATTR:hostname", "pinned_availability_zone"}),
])
def test_server_keys_per_microversion(request_ctx, version, admin, extra):
    body = server_detail(instance(), APIVersion(*map(int, version.split("."))), ctx(admin))
    assert set(body) == BASE_KEYS | extra


def test_flavor_embedded_from_2_47(request_ctx):
    old = server_detail(instance(), APIVersion(2, 46), ctx(False))["flavor"]
    new = server_detail(instance(), APIVersion(2, 47), ctx(False))["flavor"]
    assert set(old) == {"id", "links"}
    assert new == {"vcpus": 1, "ram": 128, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "m1.nano",
                   "extra_specs": {}}
