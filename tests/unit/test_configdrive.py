"""The config drive ISO (drivers/configdrive.py) and the metadata tree it is built from (core/metadata_docs.py)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from core import metadata_docs
from drivers import configdrive


def _md(**overrides) -> metadata_docs.InstanceMetadata:
    values = dict(id=42, uuid="6f1c1d4e-1111-4a4a-9b9b-123456789abc", name="vm", hostname="vm", project_id="p1",
                  availability_zone="nova", launch_index=0, reservation_id="r-1", image_ref="img", flavor_name="m1",
                  key_name="k", key_data="ssh-ed25519 AAAA k", meta={"a": "b"}, user_data=b"#!/bin/sh\n",
                  fixed_ip={"address": "10.77.0.2", "mac": "fa:16:3e:00:00:01", "network_id": "n1",
                            "network_name": "private", "cidr": "10.77.0.0/24", "gateway": "10.77.0.1",
                            "netmask": "255.255.255.0"})
    values.update(overrides)
    return metadata_docs.InstanceMetadata(**values)


@pytest.mark.skipif(shutil.which("isoinfo") is None or shutil.which("genisoimage") is None,
                    reason="!!! genisoimage not installed (apt-get install genisoimage) !!!")
def test_iso_has_label_and_files(tmp_path):
    md = _md()
    files = md.config_drive_files()
    iso = tmp_path / "disk.config"
    configdrive.make_iso(files, iso)
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "Volume id: config-2" in info
    def read(path: str) -> bytes:
        return subprocess.run(["isoinfo", "-R", "-i", str(iso), "-x", f"/{path}"], capture_output=True,
                              check=True).stdout
    meta = json.loads(read("openstack/latest/meta_data.json"))
    assert meta["uuid"] == md.uuid and meta["public_keys"] == {"k": "ssh-ed25519 AAAA k"}
    assert meta["random_seed"] == md.random_seed  # the same object the service would serve
    assert read("openstack/latest/user_data") == b"#!/bin/sh\n"
    assert json.loads(read("ec2/latest/meta-data.json"))["instance-id"] == "i-0000002a"
    assert json.loads(read("openstack/2015-10-15/network_data.json"))["networks"][0]["ip_address"] == "10.77.0.2"
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", str(iso)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "/openstack/2012-08-10/meta_data.json" in listing and "/ec2/2009-04-04/meta-data.json" in listing
    assert "/openstack/2012-08-10/network_data.json" not in listing  # Liberty and later only


def test_lookup_matches_config_drive():
    md = _md(user_data=None, key_name=None, key_data=None)
    files = md.config_drive_files()
    for path, data in files.items():
        if path.startswith("openstack/"):
            assert md.lookup(path)[0] == data
    assert "openstack/latest/user_data" not in files
    with pytest.raises(metadata_docs.NotFound):
        md.lookup("openstack/latest/user_data")
    with pytest.raises(metadata_docs.NotFound):
        md.lookup("latest/meta-data/public-keys/0/openssh-key")
    assert md.lookup("latest/meta-data/public-keys")[0] == b""


def test_user_data_decoding():
    assert metadata_docs.decode_user_data("aGVsbG8=") == b"hello"
    assert metadata_docs.decode_user_data(None) is None
    assert metadata_docs.decode_user_data("not base64!") == b"not base64!"
    big = "A" * 100000
    assert len(metadata_docs.decode_user_data(big)) == metadata_docs.MAX_USER_DATA
