"""What a compute step needs of an instance and its images, read by the conductor and put in the step's message
(issue 25: compute hosts have no database). Plain JSON: ``tasks.compute.instance_spec`` turns it back into the
driver's ``InstanceSpec``. The only secret a compute step needs, the user data of a config drive, travels sealed
for the destination host (core/host_keys.py), bound to the instance; nothing else in it is secret.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from sqlalchemy import String, bindparam, select

from core import host_keys, metadata_docs, metadata_query
from core.db import plain_rows
from core.models import ComputeNode, Image, Instance
from core.network import builtin as builtin_network
from drivers.base import DriverError
from tasks.common import StopCanvas

# An image's columns a driver's ImageSpec is made of.
_IMAGE_COLUMNS = (Image.id, Image.disk_format, Image.container_format, Image.size, Image.checksum, Image.properties)
# The metadata fields the config drive renders; user data (sealed) and the password (not on the drive) stay out.
_CLEAR_METADATA = tuple(f.name for f in dataclasses.fields(metadata_docs.InstanceMetadata)
                        if f.name not in ("user_data", "password", "random_seed"))


class NoSealingKey(Exception):
    """The host has not reported the public key its secrets are sealed with (a compute of an older release)."""
    reschedulable = True


def _image_of(s, image_id: str, disk_format: str | None, container_format: str | None, size: int | None,
              checksum: str | None, properties: dict | None) -> dict:
    props = dict(properties or {})
    return {"id": image_id, "disk_format": disk_format, "container_format": container_format, "size": size,
            "checksum": checksum, "properties": props, "kernel": image_message(s, props.get("kernel_id")),
            "ramdisk": image_message(s, props.get("ramdisk_id"))}


def image_message(s, image_id: str | None) -> dict | None:
    """What the driver needs of an image (None without an id); DriverError when the image is gone."""
    if not image_id:
        return None
    row = s.execute(select(*_IMAGE_COLUMNS).where(Image.id == image_id)).first()
    if row is None:
        raise DriverError(f"Image {image_id} could not be found.")
    return _image_of(s, *row)


def image_disk_format(s, image_id: str | None) -> str | None:
    """The disk format a snapshot is written in (None: no such image, the snapshot is skipped)."""
    return s.scalar(select(Image.disk_format).where(Image.id == image_id)) if image_id else None


# Beyond its metadata's columns, what a driver's spec takes from the instance, and its boot image (outer-joined:
# its absence is told by the image's own columns being NULL): its own image, or the bound ``image_id``.
_SPEC_COLUMNS = (Instance.task_state, Instance.user_id, Instance.vcpus, Instance.memory_mb, Instance.root_gb,
                 Instance.config_drive, Instance.root_device_tag, Instance.scheduler_hints,  # (the claim's)
                 *(c.label(f"image_{c.key}") for c in _IMAGE_COLUMNS))
_SPEC_QUERY = {other: metadata_query.live_instance_query(*_SPEC_COLUMNS, joins=((Image, Image.id == (
    bindparam("image_id", type_=String) if other else Instance.image_ref)),)) for other in (False, True)}


def read_spec(s, uuid: str, image_id: str | None = None) -> Any:
    """The row ``spec_message`` is made of (None: the instance is deleted)."""
    return plain_rows(s, _SPEC_QUERY[bool(image_id)], {"uuid": uuid, "image_id": image_id}).first()


def needs_sealing(row: Any) -> bool:
    return _wants_config_drive(row) and row.user_data_enc is not None


def sealing_key(s, host: str) -> str | None:
    return s.scalar(select(ComputeNode.sealing_key).where(ComputeNode.host == host))


def spec_message(s, uuid: str, host: str, image_id: str | None = None, row: Any = None,
                 zone: str | None = None) -> dict:
    """The driver's view of the instance for a step on ``host`` (``image_id``: boot it from another image than
    its own, unshelve; ``row``: ``read_spec``'s, read before a claim that moved the instance into ``zone``);
    StopCanvas when it was deleted, NoSealingKey when its secrets cannot be sealed for ``host``."""
    row = row if row is not None else read_spec(s, uuid, image_id)
    if row is None:
        raise StopCanvas("instance was deleted")
    md = metadata_query.from_row(row)
    if zone is not None:
        md.availability_zone = zone
    image = None
    if image_id or row.image_ref:
        if row.image_id is None:
            raise DriverError(f"Image {image_id or row.image_ref} could not be found.")
        image = _image_of(s, *(getattr(row, f"image_{c.key}") for c in _IMAGE_COLUMNS))
    flavor = row.flavor_snapshot or {}
    drive = None
    if _wants_config_drive(row):
        drive = {"metadata": {name: getattr(md, name) for name in _CLEAR_METADATA}, "sealed": None}
        if md.user_data is not None:
            key = sealing_key(s, host)
            if not key:
                raise NoSealingKey(f"Compute host {host} has not reported its sealing key; the user data of "
                                   f"instance {uuid} cannot be sent to it.")
            drive["sealed"] = host_keys.seal(key, md.user_data, uuid)
    return {"uuid": row.uuid, "name": row.display_name, "hostname": row.hostname, "project_id": row.project_id,
            "user_id": row.user_id, "vcpus": row.vcpus, "memory_mb": row.memory_mb, "root_gb": row.root_gb,
            "flavor_name": flavor.get("name", ""), "flavor_id": flavor.get("id", ""), "image": image,
            "key_data": row.key_data, "metadata": dict(row.metadata_items or {}),
            "extra_specs": dict(flavor.get("extra_specs") or {}), "network": _network_of(md),
            "config_drive": drive, "root_device_tag": row.root_device_tag}


def _wants_config_drive(inst: Any) -> bool:
    return str(inst.config_drive or "").lower() in ("true", "1", "yes")


def _network_of(md: metadata_docs.InstanceMetadata) -> dict | None:
    if not md.fixed_ip:
        return None
    info = builtin_network()
    prefixlen = info.prefixlen if md.fixed_ip["network_id"] == info.id else \
        ipaddress.ip_network(md.fixed_ip["cidr"], strict=False).prefixlen
    return {**md.fixed_ip, "prefixlen": prefixlen, "bridge": info.bridge}


