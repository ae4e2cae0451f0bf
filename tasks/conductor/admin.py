"""Conductor RPC calls of the APIs that change no instance: flavors (and their access and extra specs), key pairs,
server groups, quotas and quota classes, host aggregates, services.

Same contract as every ``rpc`` call (tasks/conductor/common.py): the API waits for ``{"ok": ...}`` or
``{"error": {...}}``; each call runs in one write transaction.
"""
from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ConductorError
from core.host_zones import AZ_KEY
from core.models import (Aggregate, AggregateHost, AggregateMetadata, ComputeNode, Flavor, FlavorProject, Instance,
                         ProviderTrait, Service, utcnow)
from core.writes import catalog, groups, quotas, resources
from tasks.conductor.common import rpc


# --- aggregates ----------------------------------------------------------------------------------------------------

def _aggregate(s: Session, aggregate_id: int) -> Aggregate:
    agg = s.get(Aggregate, aggregate_id, with_for_update=True)
    if agg is None:
        raise ConductorError(404, f"Aggregate {aggregate_id} could not be found.")
    return agg


def _zone_conflicts(s: Session, agg_id: int | None, hosts: list[str], zone: str | None) -> list[str]:
    """Zones other aggregates give ``hosts`` that differ from ``zone`` (a host may be in one zone only)."""
    if zone is None or not hosts:
        return []
    q = select(AggregateMetadata.value).join(
        AggregateHost, AggregateHost.aggregate_id == AggregateMetadata.aggregate_id).where(
        AggregateMetadata.key == AZ_KEY, AggregateHost.host.in_(hosts), AggregateMetadata.value != zone)
    if agg_id is not None:
        q = q.where(AggregateMetadata.aggregate_id != agg_id)
    return sorted(set(s.scalars(q)))


def _zone_of(agg: Aggregate) -> str | None:
    return next((m.value for m in agg.metadata_items if m.key == AZ_KEY), None)


def _lock_hosts(s: Session, hosts: list[str]) -> None:
    """Serialise zone changes that touch the same hosts (the zone rule spans several aggregates), and mark the
    hosts changed so the schedulers' host-state caches re-read them with their new aggregates."""
    if hosts:
        s.execute(update(ComputeNode).where(ComputeNode.host.in_(hosts)).values(updated_at=utcnow()))


def _set_metadata(s: Session, agg: Aggregate, metadata: dict[str, str | None], code: int, action: str) -> None:
    hosts = [h.host for h in agg.hosts]
    _lock_hosts(s, hosts)
    if AZ_KEY in metadata and metadata[AZ_KEY] is not None:
        clash = _zone_conflicts(s, agg.id, hosts, metadata[AZ_KEY])
        if clash:
            raise ConductorError(code, f"Cannot {action} aggregate {agg.id}. Reason: One or more hosts already in "
                                       f"availability zone(s) {clash}.")
    old_zone = _zone_of(agg)
    if AZ_KEY in metadata and old_zone is not None and metadata[AZ_KEY] != old_zone and hosts:
        # Instances keep the zone they were booted in: the zone of their hosts cannot move under them (Nova).
        in_zone = s.scalar(select(func.count()).select_from(Instance).where(
            Instance.host.in_(hosts), Instance.availability_zone == old_zone, Instance.deleted == 0))
        if in_zone:
            raise ConductorError(code, f"Cannot {action} aggregate {agg.id}. Reason: One or more hosts contain "
                                       f"instances in this zone.")
    current = {m.key: m for m in agg.metadata_items}
    for key, value in metadata.items():
        if value is None:
            if key in current:
                agg.metadata_items.remove(current[key])
        elif key in current:
            current[key].value = value
        else:
            agg.metadata_items.append(AggregateMetadata(key=key, value=value))
    agg.updated_at = utcnow()


@rpc("create_aggregate")
def create_aggregate(s: Session, name: str, zone: str | None) -> int:
    if s.scalar(select(Aggregate.id).where(Aggregate.name == name)) is not None:
        raise ConductorError(409, f"Aggregate {name} already exists.")
    agg = Aggregate(name=name, metadata_items=[AggregateMetadata(key=AZ_KEY, value=zone)] if zone else [])
    try:
        with s.begin_nested():
            s.add(agg)
            s.flush()
    except IntegrityError:
        raise ConductorError(409, f"Aggregate {name} already exists.") from None
    return agg.id


@rpc("update_aggregate")
def update_aggregate(s: Session, aggregate_id: int, values: dict) -> None:
    agg = _aggregate(s, aggregate_id)
    if "name" in values and values["name"] != agg.name:
        if s.scalar(select(Aggregate.id).where(Aggregate.name == values["name"])) is not None:
            raise ConductorError(409, f"Aggregate {values['name']} already exists.")
        agg.name = values["name"]
    if "availability_zone" in values:
        _set_metadata(s, agg, {AZ_KEY: values["availability_zone"]}, 400, "update")
    agg.updated_at = utcnow()


@rpc("set_aggregate_metadata")
def set_aggregate_metadata(s: Session, aggregate_id: int, metadata: dict) -> None:
    _set_metadata(s, _aggregate(s, aggregate_id), metadata, 400, "update metadata of")


@rpc("delete_aggregate")
def delete_aggregate(s: Session, aggregate_id: int) -> None:
    agg = _aggregate(s, aggregate_id)
    if agg.hosts:
        raise ConductorError(400, f"Cannot remove aggregate {aggregate_id}. Reason: Host aggregate is not "
                                  f"empty.")
    s.delete(agg)


def _known_host(s: Session, host: str) -> None:
    if s.scalar(select(ComputeNode.id).where(ComputeNode.host == host)) is None:
        raise ConductorError(404, f"Compute host {host} could not be found.")


@rpc("aggregate_add_host")
def aggregate_add_host(s: Session, aggregate_id: int, host: str) -> None:
    agg = _aggregate(s, aggregate_id)
    _known_host(s, host)
    _lock_hosts(s, [host])
    if any(h.host == host for h in agg.hosts):
        raise ConductorError(409, f"Aggregate {aggregate_id} already has host {host}.")
    clash = _zone_conflicts(s, agg.id, [host], _zone_of(agg))
    if clash:
        raise ConductorError(409, f"Cannot add host to aggregate {aggregate_id}. Reason: One or more hosts "
                                  f"already in availability zone(s) {clash}.")
    agg.hosts.append(AggregateHost(host=host))
    agg.updated_at = utcnow()


@rpc("aggregate_remove_host")
def aggregate_remove_host(s: Session, aggregate_id: int, host: str) -> None:
    agg = _aggregate(s, aggregate_id)
    _known_host(s, host)
    row = next((h for h in agg.hosts if h.host == host), None)
    if row is None:
        raise ConductorError(404, f"Aggregate {aggregate_id} has no host {host}.")
    _lock_hosts(s, [host])
    agg.hosts.remove(row)
    agg.updated_at = utcnow()


# --- flavors -------------------------------------------------------------------------------------------------------

create_flavor = rpc("create_flavor")(catalog.create_flavor)
delete_flavor = rpc("delete_flavor")(catalog.delete_flavor)

def _flavor(s: Session, flavorid: str) -> Flavor:
    flavor = s.scalars(select(Flavor).where(Flavor.flavorid == flavorid, Flavor.disabled.is_(False))
                       .with_for_update()).first()
    if flavor is None:
        raise ConductorError(404, f"Flavor {flavorid} could not be found.")
    return flavor


@rpc("add_flavor_access")
def add_flavor_access(s: Session, flavorid: str, project_id: str) -> None:
    flavor = _flavor(s, flavorid)
    if flavor.is_public:
        raise ConductorError(409, "Can not add access to a public flavor.")
    exists = s.scalar(select(FlavorProject.id).where(FlavorProject.flavor_id == flavor.id,
                                                     FlavorProject.project_id == project_id))
    if exists is not None:
        raise ConductorError(409, f"Flavor access already exists for flavor {flavorid} and project "
                                  f"{project_id} combination.")
    s.add(FlavorProject(flavor_id=flavor.id, project_id=project_id))


@rpc("remove_flavor_access")
def remove_flavor_access(s: Session, flavorid: str, project_id: str) -> None:
    flavor = _flavor(s, flavorid)
    gone = s.execute(delete(FlavorProject).where(FlavorProject.flavor_id == flavor.id,
                                                 FlavorProject.project_id == project_id)).rowcount
    if not gone:
        raise ConductorError(404, f"Flavor access not found for {flavorid} / {project_id} combination.")


@rpc("set_flavor_extra_specs")
def set_flavor_extra_specs(s: Session, flavorid: str, specs: dict[str, str]) -> None:
    flavor = _flavor(s, flavorid)
    flavor.extra_specs = {**(flavor.extra_specs or {}), **specs}


@rpc("delete_flavor_extra_spec")
def delete_flavor_extra_spec(s: Session, flavorid: str, key: str) -> None:
    flavor = _flavor(s, flavorid)
    specs = dict(flavor.extra_specs or {})
    if key not in specs:
        raise ConductorError(404, f"Flavor {flavorid} has no extra specs with key {key}.")
    del specs[key]
    flavor.extra_specs = specs


@rpc("update_flavor_description")
def update_flavor_description(s: Session, flavorid: str, description: str | None) -> None:
    _flavor(s, flavorid).description = description


# --- key pairs, server groups, quotas ------------------------------------------------------------------------------

create_keypair = rpc("create_keypair")(catalog.create_keypair)
delete_keypair = rpc("delete_keypair")(catalog.delete_keypair)
create_server_group = rpc("create_server_group")(groups.create_server_group)
delete_server_group = rpc("delete_server_group")(groups.delete_server_group)
update_quota_set = rpc("update_quota_set")(quotas.set_project_quotas)
delete_quota_set = rpc("delete_quota_set")(quotas.delete_project_quotas)
update_quota_class_set = rpc("update_quota_class_set")(quotas.set_class_quotas)


# --- services ------------------------------------------------------------------------------------------------------

update_service = rpc("update_service")(resources.update_service)


@rpc("delete_service")
def delete_service(s: Session, service_ref: str, by_uuid: bool) -> None:
    """Delete a service; for a compute service also its node and aggregate memberships (Nova)."""
    if by_uuid:
        svc = s.scalars(select(Service).where(Service.uuid == service_ref).with_for_update()).first()
    else:
        svc = s.get(Service, int(service_ref), with_for_update=True) if service_ref.isdigit() else None
    if svc is None:
        raise ConductorError(404, f"Service {service_ref} not found.")
    if svc.binary.endswith("compute"):
        hosting = s.scalar(select(func.count()).select_from(Instance).where(
            Instance.host == svc.host, Instance.deleted == 0))
        if hosting:
            raise ConductorError(409, "Unable to delete compute service that is hosting instances. Migrate "
                                      "or delete the instances first.")
        s.execute(delete(AggregateHost).where(AggregateHost.host == svc.host))
        nodes = select(ComputeNode.uuid).where(ComputeNode.service_id == svc.id)
        s.execute(delete(ProviderTrait).where(ProviderTrait.provider_uuid.in_(nodes)))  # its Placement traits
        s.execute(delete(ComputeNode).where(ComputeNode.service_id == svc.id))
    s.delete(svc)
