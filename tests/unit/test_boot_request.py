"""The create's boot request (app/compute/boot_request.py) built without a request: a loaded body, a context, a
microversion and a policy check in; the conductor's create_instances argument, or Nova's 400/403, out."""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app.compute import boot_request
from app.context import RequestContext
from app.microversion import APIVersion
from core import crypto, network
from core.db import write_session
from core.errors import ApiError
from core.models import ComputeNode, Flavor, Image, KeyPair, QuotaLimit, Service

CTX = RequestContext(user_id="u-alice", user_name="alice", project_id="p-a", project_name="proj-a",
                     roles=("member", "reader"), request_id="req-1")
LATEST, V2_1 = APIVersion(2, 96), APIVersion(2, 1)
IMAGE_ID = str(uuid.UUID(int=1))
OTHERS_IMAGE_ID = str(uuid.UUID(int=2))


class Policy:
    """authorize(rule, project): records the rules asked for; refuses them unless ``allow``."""

    def __init__(self, allow: bool = True):
        self.allow, self.asked = allow, []

    def __call__(self, rule: str, project: str | None) -> None:
        self.asked.append((rule, project))
        if not self.allow:
            raise ApiError(403, f"Policy doesn't allow {rule} to be performed.")


@pytest.fixture
def cloud(stratus_env):
    """An image and a key pair of project A, another project's private image, two flavors, one compute host."""
    with write_session() as s:
        s.add_all([Image(id=IMAGE_ID, name="a-img", status="active", visibility="private", owner="p-a",
                         min_ram=128, min_disk=2, disk_format="raw", container_format="bare"),
                   Image(id=OTHERS_IMAGE_ID, name="b-img", status="active", visibility="private", owner="p-b"),
                   Flavor(flavorid="small", name="m.small", vcpus=2, memory_mb=256, root_gb=5),
                   Flavor(flavorid="tiny", name="m.tiny", vcpus=1, memory_mb=64, root_gb=1),
                   KeyPair(name="a-key", user_id="u-alice", fingerprint="fp", public_key="ssh-ed25519 AAAA a@b")])
        svc = Service(host="h1", binary="nova-compute", topic="compute")
        s.add(svc)
        s.flush()
        s.add(ComputeNode(service_id=svc.id, host="h1", hypervisor_hostname="h1.node", hypervisor_type="fake",
                          vcpus=8, memory_mb=8192, local_gb=100, availability_zone="zone-1"))


def _body(**fields) -> dict:
    """A body as ServerCreateSchema loads it."""
    return {"name": "vm", "imageRef": IMAGE_ID, "flavorRef": "small", **fields}


def _refused(code: int, message: str, body: dict, v: APIVersion = LATEST, hints: dict | None = None,
             policy: Policy | None = None) -> None:
    with pytest.raises(ApiError) as caught:
        boot_request.build(body, hints or {}, CTX, v, policy or Policy())
    assert caught.value.code == code and message in caught.value.message, (caught.value.code, caught.value.message)


def test_a_create_body_becomes_the_conductors_request(cloud):
    body = _body(flavorRef="http://stratus.test/v2.1/flavors/small", key_name="a-key", availability_zone="zone-1",
                 metadata={"k": "v"}, networks="none", config_drive=True, tags=["t1"], description="d",
                 user_data="aGk=")
    boot = boot_request.build(body, {"same_host": "x"}, CTX, LATEST, Policy())
    req = boot.request
    assert req["project_id"] == "p-a" and req["user_id"] == "u-alice" and req["request_id"] == "req-1"
    assert (req["image_id"], req["flavor_id"], req["key_data"]) == (IMAGE_ID, "small", "ssh-ed25519 AAAA a@b")
    assert (req["availability_zone"], req["networks"], req["config_drive"], req["tags"]) == \
        ("zone-1", "none", "True", ["t1"])
    assert req["count"] == req["min_count"] == 1 and len(req["uuids"]) == 1
    assert req["scheduler_hints"] == {"same_host": "x"} and req["metadata"] == {"k": "v"}
    assert req["reservation_id"].startswith("r-") and boot.reservation_id == req["reservation_id"]
    # Secrets only encrypted in the request, and redacted from what Flower and the logs show.
    assert len(boot.admin_pass) == 12 and crypto.decrypt(req["admin_pass_enc"]) == boot.admin_pass
    assert crypto.decrypt(req["user_data_enc"]) == "aGk="
    assert boot.redacted()["admin_pass_enc"] == boot.redacted()["user_data_enc"] == "<redacted>"


def test_networks_by_microversion(cloud):
    assert boot_request.build(_body(), {}, CTX, V2_1, Policy()).request["networks"] == "auto"
    _refused(400, "'networks' is a required property", _body())  # from 2.37
    builtin = network.builtin().id
    assert boot_request.build(_body(networks=[{"uuid": builtin}]), {}, CTX, LATEST, Policy()).request[
        "networks"] == [{"uuid": builtin}]
    _refused(400, f"Network {uuid.UUID(int=9)} could not be found.", _body(networks=[{"uuid": str(uuid.UUID(int=9))}]))
    _refused(400, "Additional properties are not allowed ('tag' was unexpected)",
             _body(networks=[{"uuid": builtin, "tag": "nic"}]), APIVersion(2, 37))


@pytest.mark.parametrize("fields, message", [
    ({"imageRef": OTHERS_IMAGE_ID}, "Can not find requested image"),
    ({"imageRef": "not-a-uuid"}, "Invalid imageRef provided."),
    ({"flavorRef": "nope"}, "Invalid flavorRef provided."),
    ({"flavorRef": "tiny"}, "Flavor's memory is too small for requested image."),
    ({"key_name": "b-key"}, "Invalid key_name provided."),
    ({"availability_zone": "zone-9"}, "The requested availability zone is not available"),
    ({"min_count": 3, "max_count": 2}, "min_count must be <= max_count"),
    ({"max_count": 2, "hostname": "h"}, "Cannot request a hostname with multiple instances"),
    ({"block_device_mapping_v2": [{"source_type": "volume", "uuid": IMAGE_ID}]}, "no volume service"),
])
def test_what_the_database_or_the_body_refuses_is_400(cloud, fields, message):
    _refused(400, message, _body(networks="auto", **fields))


def test_fields_newer_than_the_microversion_are_unknown(cloud):
    _refused(400, "Additional properties are not allowed ('tags' was unexpected)", _body(tags=["t"]), V2_1)
    _refused(400, "Additional properties are not allowed ('host' was unexpected)", _body(host="h1"),
             APIVersion(2, 73))


def test_a_requested_host_asks_the_policy_first(cloud):
    policy = Policy()
    boot = boot_request.build(_body(networks="auto", host="h1"), {}, CTX, LATEST, policy)
    assert boot.request["requested_host"] == "h1"
    assert policy.asked == [("compute:servers:create:requested_destination", "p-a")]
    _refused(403, "requested_destination", _body(networks="auto", host="h1"), policy=Policy(allow=False))
    _refused(400, "Compute host h9 could not be found.", _body(networks="auto", host="h9"))


def test_the_zone_host_node_form_is_the_forced_host_rule(cloud):
    policy = Policy()
    boot = boot_request.build(_body(networks="auto", availability_zone="zone-1:h1"), {}, CTX, LATEST, policy)
    assert (boot.request["availability_zone"], boot.request["requested_host"]) == ("zone-1", "h1")
    assert policy.asked == [("os_compute_api:servers:create:forced_host", "p-a")]
    _refused(403, "forced_host", _body(networks="auto", availability_zone="zone-1:h1"), policy=Policy(allow=False))


def test_the_group_hint_names_a_visible_group(cloud):
    _refused(400, "is not a 'uuid'", _body(networks="auto"), hints={"group": "x"})
    _refused(400, f"Instance group {uuid.UUID(int=7)} could not be found.", _body(networks="auto"),
             hints={"group": str(uuid.UUID(int=7))})


def test_multi_create_shrinks_to_the_quota_and_refuses_below_min_count(cloud):
    with write_session() as s:
        s.add(QuotaLimit(project_id="p-a", resource="instances", hard_limit=2))
    boot = boot_request.build(_body(networks="auto", max_count=5), {}, CTX, LATEST, Policy())
    assert boot.request["count"] == 2 and len(boot.request["uuids"]) == 2
    _refused(403, "Quota exceeded for instances", _body(networks="auto", min_count=3, max_count=5))


def test_the_module_runs_without_flask():
    code = "import sys, app.compute.boot_request; assert 'flask' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True)
