"""An instance's metadata read from the database: one statement (``live_instance_query``) whose row
``from_row`` turns into the ``core.metadata_docs.InstanceMetadata`` that the metadata service serves and the
compute worker puts on the config drive; and the metadata service's lookups of the instance a request speaks for.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import Select, String, bindparam, select
from sqlalchemy.orm import Session

from core import crypto
from core.db import plain_rows
from core.metadata_docs import InstanceMetadata, decode_user_data
from core.models import FixedIP, Instance, InstancePassword, Network


# The instance's columns its metadata is made of.
_METADATA_COLUMNS = (Instance.id, Instance.uuid, Instance.display_name, Instance.hostname, Instance.project_id,
                     Instance.availability_zone, Instance.launch_index, Instance.reservation_id, Instance.image_ref,
                     Instance.flavor_snapshot, Instance.key_name, Instance.key_data, Instance.metadata_items,
                     Instance.user_data_enc, Instance.device_metadata)
# Its first fixed IP with the network, and the password a guest posted (outer joins: either may be missing).
_JOINED_COLUMNS = (FixedIP.address.label("ip_address"), FixedIP.mac.label("ip_mac"), FixedIP.tag.label("ip_tag"),
                   Network.id.label("net_id"), Network.name.label("net_name"), Network.cidr.label("net_cidr"),
                   Network.gateway.label("net_gateway"), InstancePassword.password.label("password"))


def live_instance_query(*extra_columns: Any, joins: tuple = ()) -> Select:
    """One statement for a live instance's metadata (and ``extra_columns`` of the outer ``joins``, each a
    (table, on clause)): its columns, its first fixed IP and network, its password; the instance's uuid is the
    bound parameter ``uuid``. Build it once; ``from_row`` makes the metadata of a row."""
    query = (select(*_METADATA_COLUMNS, *_JOINED_COLUMNS, *extra_columns)
             .outerjoin(FixedIP, FixedIP.instance_uuid == Instance.uuid)
             .outerjoin(Network, Network.id == FixedIP.network_id)
             .outerjoin(InstancePassword, InstancePassword.instance_uuid == Instance.uuid))
    for table, on in joins:
        query = query.outerjoin(table, on)
    return query.where(Instance.uuid == bindparam("uuid", type_=String), Instance.deleted == 0) \
        .order_by(FixedIP.id).limit(1)


def from_row(row: Any) -> InstanceMetadata:
    """Build the metadata from a row of ``live_instance_query`` (decrypts the user data)."""
    fixed = None
    if row.ip_address is not None and row.net_id is not None:
        fixed = {"address": row.ip_address, "mac": row.ip_mac, "tag": row.ip_tag, "network_id": row.net_id,
                 "network_name": row.net_name, "cidr": row.net_cidr, "gateway": row.net_gateway,
                 "netmask": str(ipaddress.ip_network(row.net_cidr, strict=False).netmask)}
    flavor = row.flavor_snapshot or {}
    return InstanceMetadata(
        id=row.id, uuid=row.uuid, name=row.display_name, hostname=row.hostname, project_id=row.project_id,
        availability_zone=row.availability_zone or "", launch_index=row.launch_index or 0,
        reservation_id=row.reservation_id, image_ref=row.image_ref or "", flavor_name=flavor.get("name", ""),
        key_name=row.key_name, key_data=row.key_data, meta=dict(row.metadata_items or {}),
        user_data=decode_user_data(crypto.decrypt(row.user_data_enc)), fixed_ip=fixed, password=row.password,
        devices=list(row.device_metadata or []))


_METADATA_QUERY = live_instance_query()


def load(s: Session, uuid: str) -> InstanceMetadata | None:
    """The metadata of the live instance ``uuid``, or None if there is none."""
    row = plain_rows(s, _METADATA_QUERY, {"uuid": uuid}).first()
    return None if row is None else from_row(row)


def live_instance_by_address(s: Session, address: str) -> Instance | None:
    return s.scalars(select(Instance).join(FixedIP, FixedIP.instance_uuid == Instance.uuid)
                     .where(FixedIP.address == address, Instance.deleted == 0)).first()


def live_instance_by_uuid(s: Session, uuid: str) -> Instance | None:
    return s.scalars(select(Instance).where(Instance.uuid == uuid, Instance.deleted == 0)).first()
