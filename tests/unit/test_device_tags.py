"""Device tags (2.32 / 2.42): the version windows of ``networks[].tag`` and ``block_device_mapping_v2[].tag``,
their storage, the drivers' device metadata and the ``devices`` list of meta_data.json."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from core import metadata_docs
from tests.unit.inprocess import inprocess_conductor, world  # noqa: F401 (fixtures)


def _boot(client, world, version: str, *, net_tag=None, bdm_tag=None):
    from core import network
    server: dict = {"name": "tagged", "imageRef": world.image_id, "flavorRef": world.flavor_id}
    net: dict = {"uuid": network.builtin().id}
    if net_tag is not None:
        net["tag"] = net_tag
    server["networks"] = [net]
    if bdm_tag is not None:
        server["block_device_mapping_v2"] = [{"source_type": "image", "destination_type": "local",
                                              "uuid": world.image_id, "boot_index": 0, "tag": bdm_tag}]
    return client.post("/v2.1/servers", json={"server": server},
                       headers={**world.a.headers, "OpenStack-API-Version": f"compute {version}"})


@pytest.mark.parametrize("version, ok", [("2.31", False), ("2.32", True), ("2.36", True), ("2.37", False),
                                         ("2.41", False), ("2.42", True), ("2.96", True)])
def test_network_tag_window(client, world, version, ok):
    resp = _boot(client, world, version, net_tag="nic1")
    if ok:
        assert resp.status_code == 202, resp.get_data(as_text=True)
    else:
        assert resp.status_code == 400
        assert "'tag' was unexpected" in resp.get_json()["badRequest"]["message"]


@pytest.mark.parametrize("version, ok", [("2.31", False), ("2.32", True), ("2.33", False), ("2.36", False),
                                         ("2.41", False), ("2.42", True)])
def test_block_device_tag_window(client, world, version, ok):
    resp = _boot(client, world, version, bdm_tag="root")
    if ok:
        assert resp.status_code == 202, resp.get_data(as_text=True)
    else:
        assert resp.status_code == 400
        assert "'tag' was unexpected" in resp.get_json()["badRequest"]["message"]


@pytest.mark.parametrize("tag, message", [("a/b", "does not match '^[^,/]*$'"), ("a,b", "does not match"),
                                          ("", "is too short"), ("x" * 61, "is too long"),
                                          (7, "is not of type 'string'")])
def test_bad_tags(client, world, tag, message):
    resp = _boot(client, world, "2.42", net_tag=tag)
    assert resp.status_code == 400 and message in resp.get_json()["badRequest"]["message"]


def test_tags_are_stored_with_the_nic_and_the_root_disk(client, world):
    from core.db import read_session
    from core.models import FixedIP, Instance
    resp = _boot(client, world, "2.42", net_tag="nic1", bdm_tag="root-disk")
    uuid = resp.get_json()["server"]["id"]
    with read_session() as s:
        assert s.scalar(select(FixedIP.tag).where(FixedIP.instance_uuid == uuid)) == "nic1"
        assert s.scalar(select(Instance.root_device_tag).where(Instance.uuid == uuid)) == "root-disk"


# --- drivers ---------------------------------------------------------------------------------------------------

def _spec(config_drive: bool = False, net_tag: str | None = "nic1", root_tag: str | None = "boot"):
    from drivers.base import ImageSpec, InstanceSpec
    image = ImageSpec(id="img", disk_format="raw", container_format="bare", size=1, checksum=None,
                      properties={}, path="/nonexistent")
    return InstanceSpec(uuid="11111111-2222-3333-4444-555555555555", name="vm", hostname="vm", project_id="p",
                        user_id="u", vcpus=1, memory_mb=64, root_gb=1, flavor_name="tiny", flavor_id="tiny",
                        image=image, network={"mac": "fa:16:3e:00:00:01", "address": "10.0.0.2", "tag": net_tag,
                                              "bridge": "br-x"},
                        config_drive_files={} if config_drive else None, root_device_tag=root_tag)


def test_fake_driver_reports_tagged_devices_at_its_pci_slots():
    from drivers.fake import FakeDriver
    driver = FakeDriver("fake-dt")
    spec = _spec(config_drive=True)
    driver.build_disk(spec)
    driver.spawn(spec)
    assert driver.device_metadata(spec) == [
        {"type": "nic", "mac": "fa:16:3e:00:00:01", "tags": ["nic1"], "bus": "pci", "address": "0000:00:05.0"},
        {"type": "disk", "serial": None, "tags": ["boot"], "bus": "pci", "address": "0000:00:03.0"}]
    untagged = _spec(net_tag=None, root_tag=None)
    assert driver.device_metadata(untagged) == []
    driver.destroy(spec.uuid)


def test_base_driver_default_knows_no_bus():  # what VMware reports: no PCI address
    from drivers.base import ComputeDriver
    devices = ComputeDriver.device_metadata(None, _spec(root_tag=None))  # type: ignore[arg-type]
    assert devices == [{"type": "nic", "mac": "fa:16:3e:00:00:01", "tags": ["nic1"], "bus": None, "address": None}]


def test_libvirt_device_buses_from_domain_xml():
    from drivers.libvirt.config import device_buses
    xml = """<domain><devices>
      <disk type='file' device='disk'><target dev='vda' bus='virtio'/>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>
      <disk type='file' device='disk'><target dev='vdb' bus='virtio'/>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></disk>
      <interface type='bridge'><mac address='fa:16:3e:00:00:01'/>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>
      <interface type='user'><mac address='52:54:00:aa:bb:cc'/></interface>
    </devices></domain>"""
    assert device_buses(xml, {"fa:16:3e:00:00:01"}) == {"fa:16:3e:00:00:01": ("pci", "0000:00:03.0"),
                                                        "root": ("pci", "0000:00:04.0")}
    scsi = "<domain><devices><disk><target dev='vda' bus='scsi'/><address type='drive' controller='0' bus='0' " \
           "target='0' unit='1'/></disk></devices></domain>"
    assert device_buses(scsi, set()) == {"root": ("scsi", "0:0:0:1")}


# --- metadata ------------------------------------------------------------------------------------------------

DEVICES = [{"type": "nic", "mac": "fa:16:3e:00:00:01", "tags": ["nic1"], "bus": "pci", "address": "0000:00:03.0"},
           {"type": "disk", "serial": None, "tags": ["boot"], "bus": None, "address": None}]


def test_devices_rendered_per_metadata_version():
    assert metadata_docs.render_devices(DEVICES, metadata_docs.NEWTON_ONE) == [
        {"type": "nic", "mac": "fa:16:3e:00:00:01", "bus": "pci", "address": "0000:00:03.0", "tags": ["nic1"]},
        {"type": "disk", "serial": None, "bus": "none", "address": "none", "tags": ["boot"]}]
    # Nova adds vf_trusted from Rocky
    assert metadata_docs.render_devices(DEVICES, metadata_docs.ROCKY)[0]["vf_trusted"] is False
    md = metadata_docs.InstanceMetadata(id=1, uuid="u", name="n", hostname="h", project_id="p",
                                        availability_zone="nova", launch_index=0, reservation_id="r", image_ref="i",
                                        flavor_name="f", devices=DEVICES)
    assert "devices" not in md.meta_data(metadata_docs.LIBERTY)
    assert md.meta_data("latest")["devices"][0]["tags"] == ["nic1"]
    body, _ = md.lookup("openstack/2016-06-30/meta_data.json")
    assert json.loads(body)["devices"][1]["type"] == "disk"


def test_config_drive_files_get_the_devices():
    md = metadata_docs.InstanceMetadata(id=1, uuid="u", name="n", hostname="h", project_id="p",
                                        availability_zone="nova", launch_index=0, reservation_id="r", image_ref="i",
                                        flavor_name="f")
    files = metadata_docs.with_devices(md.config_drive_files(), DEVICES)
    assert json.loads(files["openstack/latest/meta_data.json"])["devices"][0]["mac"] == "fa:16:3e:00:00:01"
    assert "devices" not in json.loads(files["openstack/2015-10-15/meta_data.json"])
    assert files["ec2/latest/meta-data.json"] == md.config_drive_files()["ec2/latest/meta-data.json"]
