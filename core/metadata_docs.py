"""What an instance sees as its metadata: the documents the metadata service serves and the config drive holds.

Modelled on nova/api/metadata/base.py (InstanceMetadata): the OpenStack tree (openstack/<version>/...) and the
EC2 tree (<version>/meta-data/...), for Nova's dated versions and "latest". ``lookup(path)`` answers the HTTP
service; ``config_drive_files()`` gives the files of the config drive (openstack/ and ec2/ trees). Pure rendering
from an instance's data (no database, no HTTP): the drivers import it for the config drive, and
``core.metadata_query`` builds an ``InstanceMetadata`` from the database.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import secrets
import zlib

# Nova's OpenStack metadata versions (nova/api/metadata/base.py)
FOLSOM, GRIZZLY, HAVANA, LIBERTY = "2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15"
NEWTON_ONE, NEWTON_TWO, OCATA, ROCKY, VICTORIA = "2016-06-30", "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14"
OPENSTACK_VERSIONS = [FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO, OCATA, ROCKY, VICTORIA]
# EC2 versions Nova serves
EC2_VERSIONS = ["1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
                "2008-09-01", "2009-04-04"]
MAX_USER_DATA = 65535  # bytes of decoded user data served (Nova's API limit is 65535 base64 characters)
MAX_PASSWORD = 256  # Nova's CHUNKS * CHUNK_LENGTH


class NotFound(Exception):
    """The path names nothing (HTTP 404)."""


def _version_at_least(version: str, minimum: str) -> bool:
    return version == "latest" or version >= minimum


def _dump(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


@dataclasses.dataclass
class InstanceMetadata:
    id: int
    uuid: str
    name: str
    hostname: str
    project_id: str
    availability_zone: str
    launch_index: int
    reservation_id: str
    image_ref: str
    flavor_name: str
    key_name: str | None = None
    key_data: str | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    user_data: bytes | None = dataclasses.field(default=None, repr=False)
    #: {"address", "mac", "network_id", "network_name", "cidr", "gateway", "netmask"} or None
    fixed_ip: dict | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    #: Tagged devices as the driver placed them (Instance.device_metadata); rendered by render_devices.
    devices: list = dataclasses.field(default_factory=list)
    random_seed: str = dataclasses.field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(512)).decode(), repr=False)

    # -- identities ------------------------------------------------------------------------------------------
    @property
    def ec2_id(self) -> str:
        return f"i-{self.id:08x}"

    @property
    def ami_id(self) -> str:
        return f"ami-{zlib.crc32(self.image_ref.encode()):08x}" if self.image_ref else ""

    # -- the OpenStack tree -------------------------------------------------------------------------------------
    def meta_data(self, version: str) -> dict:
        md: dict = {"uuid": self.uuid, "availability_zone": self.availability_zone, "hostname": self.hostname,
                    "name": self.name, "launch_index": self.launch_index, "meta": dict(self.meta)}
        if self.key_name and self.key_data:
            md["public_keys"] = {self.key_name: self.key_data}
            md["keys"] = [{"name": self.key_name, "type": "ssh", "data": self.key_data}]
        else:
            md["public_keys"] = {}
            md["keys"] = []
        if _version_at_least(version, GRIZZLY):
            md["random_seed"] = self.random_seed
        if _version_at_least(version, LIBERTY):
            md["project_id"] = self.project_id
        if _version_at_least(version, NEWTON_ONE):
            md["devices"] = render_devices(self.devices, version)
        if _version_at_least(version, VICTORIA):
            md["dedicated_cpus"] = []
        return md

    def network_data(self) -> dict:
        if not self.fixed_ip:
            return {"links": [], "networks": [], "services": []}
        ip = self.fixed_ip
        link = f"tap{ip['mac'].replace(':', '')[-10:]}"
        return {
            "links": [{"id": link, "vif_id": ip["network_id"], "type": "bridge", "mtu": 1500,
                       "ethernet_mac_address": ip["mac"]}],
            "networks": [{"id": "network0", "type": "ipv4", "link": link, "ip_address": ip["address"],
                          "netmask": ip["netmask"], "network_id": ip["network_id"],
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": ip["gateway"]}],
                          "services": []}],
            "services": [],
        }

    def openstack_files(self, version: str) -> dict[str, bytes]:
        """The files of openstack/<version>/ (password is the service's only; user_data only when given)."""
        files = {"meta_data.json": _dump(self.meta_data(version))}
        if self.user_data is not None:
            files["user_data"] = self.user_data
        if _version_at_least(version, HAVANA):
            files["vendor_data.json"] = _dump({})
        if _version_at_least(version, LIBERTY):
            files["network_data.json"] = _dump(self.network_data())
        if _version_at_least(version, NEWTON_TWO):
            files["vendor_data2.json"] = _dump({})
        return files

    # -- the EC2 tree -------------------------------------------------------------------------------------------
    def ec2_meta_data(self, version: str) -> dict:
        address = self.fixed_ip["address"] if self.fixed_ip else ""
        md: dict = {"ami-id": self.ami_id, "ami-launch-index": self.launch_index, "ami-manifest-path": "FIXME",
                    "instance-id": self.ec2_id, "hostname": self.hostname, "local-ipv4": address,
                    "reservation-id": self.reservation_id, "security-groups": ["default"]}
        if self.key_name and self.key_data:
            md["public-keys"] = {"0": {"_name": f"0={self.key_name}", "openssh-key": self.key_data}}
        if _version_at_least(version, "2007-01-19"):
            md["local-hostname"] = self.hostname
            md["public-hostname"] = self.hostname
            md["public-ipv4"] = ""
        if _version_at_least(version, "2007-08-29"):
            md["instance-type"] = self.flavor_name
        if _version_at_least(version, "2007-12-15"):
            md["block-device-mapping"] = {"ami": "vda", "root": "/dev/vda"}
        if _version_at_least(version, "2008-02-01"):
            md["placement"] = {"availability-zone": self.availability_zone}
        if _version_at_least(version, "2008-09-01"):
            md["instance-action"] = "none"
        return md

    def _ec2_lookup(self, version: str, parts: list[str]) -> bytes:
        if not parts:
            return b"meta-data/\nuser-data" if self.user_data is not None else b"meta-data/"
        if parts[0] == "user-data" and len(parts) == 1:
            if self.user_data is None:
                raise NotFound
            return self.user_data
        if parts[0] != "meta-data":
            raise NotFound
        node: object = self.ec2_meta_data(version)
        rest = parts[1:]
        if rest[:1] == ["public-keys"]:
            keys = node.get("public-keys", {}) if isinstance(node, dict) else {}
            if len(rest) == 1:
                return "\n".join(v["_name"] for _, v in sorted(keys.items())).encode()
            key = keys.get(rest[1].split("=")[0])
            if key is None:
                raise NotFound
            if len(rest) == 2:
                return b"openssh-key"
            if len(rest) == 3 and rest[2] == "openssh-key":
                return key["openssh-key"].encode()
            raise NotFound
        for part in rest:
            if not isinstance(node, dict) or part not in node:
                raise NotFound
            node = node[part]
        return _ec2_render(node)

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def lookup(self, path: str) -> tuple[bytes, str]:
        """Answer GET <path> (no leading slash) as (body, mimetype); raise NotFound for anything else."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return "\n".join([*EC2_VERSIONS, "latest"]).encode(), "text/plain"
        if parts[0] == "openstack":
            if len(parts) == 1:
                return "\n".join([*OPENSTACK_VERSIONS, "latest"]).encode(), "text/plain"
            version = parts[1]
            if version != "latest" and version not in OPENSTACK_VERSIONS:
                raise NotFound
            files = self.openstack_files(version)
            if len(parts) == 2:
                names = list(files)
                if _version_at_least(version, GRIZZLY):
                    names.append("password")
                return "\n".join(sorted(names)).encode(), "text/plain"
            if len(parts) != 3:
                raise NotFound
            if parts[2] == "password" and _version_at_least(version, GRIZZLY):
                return (self.password or "").encode(), "text/plain"
            if parts[2] not in files:
                raise NotFound
            return files[parts[2]], "application/json" if parts[2].endswith(".json") else "text/plain"
        version = parts[0]
        if version != "latest" and version not in EC2_VERSIONS:
            raise NotFound
        return self._ec2_lookup(version, parts[1:]), "text/plain"

    # -- config drive -------------------------------------------------------------------------------------------
    def config_drive_files(self) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for version in [*OPENSTACK_VERSIONS, "latest"]:
            for name, data in self.openstack_files(version).items():
                files[f"openstack/{version}/{name}"] = data
        for version in [*EC2_VERSIONS, "latest"]:
            files[f"ec2/{version}/meta-data.json"] = _dump(self.ec2_meta_data(version))
            if self.user_data is not None:
                files[f"ec2/{version}/user-data"] = self.user_data
        return files


def render_devices(devices: list[dict], version: str) -> list[dict]:
    """Nova's InstanceMetadata._get_device_metadata: each tagged device as the guest sees it. ``bus`` and
    ``address`` are "none" when the driver knows no bus; NICs carry ``vf_trusted`` (false) from 2018-08-27."""
    out = []
    for dev in devices or []:
        item: dict = {}
        if dev.get("type") == "nic":
            if _version_at_least(version, ROCKY):
                item["vf_trusted"] = bool(dev.get("vf_trusted", False))
            item["type"] = "nic"
            item["mac"] = dev["mac"]
        elif dev.get("type") == "disk":
            item["type"] = "disk"
            for key in ("serial", "path"):
                if key in dev:
                    item[key] = dev[key]
        else:
            continue
        bus = dev.get("bus")
        item["bus"] = bus or "none"
        item["address"] = (dev.get("address") or "none") if bus else "none"
        if dev.get("tags"):
            item["tags"] = list(dev["tags"])
        out.append(item)
    return out


def with_devices(files: dict[str, bytes], devices: list[dict]) -> dict[str, bytes]:
    """Config drive files with ``devices`` in each openstack/<version>/meta_data.json that has the key: a driver
    learns the device addresses only once the guest is defined, after the files were made (as in Nova, whose
    libvirt driver builds the config drive after defining the domain)."""
    out = dict(files)
    for path, data in files.items():
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "openstack" and parts[2] == "meta_data.json":
            md = json.loads(data)
            if "devices" in md:
                md["devices"] = render_devices(devices, parts[1])
                out[path] = _dump(md)
    return out


def _ec2_render(node: object) -> bytes:
    if isinstance(node, dict):
        return "\n".join(f"{k}/" if isinstance(v, dict) else k for k, v in sorted(node.items())).encode()
    if isinstance(node, (list, tuple)):
        return "\n".join(str(v) for v in node).encode()
    return str(node).encode()


def decode_user_data(stored: str | None) -> bytes | None:
    """User data as the API stored it (base64, as Nova's API takes it) -> the guest's bytes."""
    if stored is None:
        return None
    try:
        data = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError):
        data = stored.encode()
    return data[:MAX_USER_DATA]
