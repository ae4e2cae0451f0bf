"""The conductor's writes behind the Placement API. A compute node's inventory is its row (total, reserved and
allocation ratio columns, which the claim and the scheduler read at once); hand-added providers, their
inventories and their consumers' allocations are the ``placement_*`` rows. Every write checks the provider's
(or consumer's) generation and moves it; a stale one is 409 ``placement.concurrent_update``.
"""
from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core import placement as view
from core.errors import ConductorError
from core.models import (Aggregate, AggregateHost, AggregateMetadata, ComputeNode, Consumer,
                         ConsumerAllocation, CustomResourceClass, CustomTrait, ProviderAggregate, ProviderInventory,
                         ProviderTrait, ResourceProvider, utcnow)
from core.writes.resources import orphaned_allocations, release_allocation

CONCURRENT = "placement.concurrent_update"
INUSE = "placement.inventory.inuse"


def _conflict(message: str, code: str = CONCURRENT) -> ConductorError:
    return ConductorError(409, message, code)


def _stale(uuid: str) -> ConductorError:
    return _conflict(f"resource provider generation conflict: the generation given for {uuid} is not current. "
                     f"Read the provider again and retry.")


def _provider(s: Session, uuid: str) -> view.Provider:
    prov = view.provider(s, uuid)
    if prov is None:
        raise ConductorError(404, f"No resource provider with uuid {uuid} found", "placement.undefined_code")
    return prov


def _bump(s: Session, prov: view.Provider, generation: int | None, **node_values) -> int:
    """Move the provider's generation (and write ``node_values`` on a compute node) if it is still ``generation``
    (None: whatever it is); the new generation."""
    if prov.is_compute:
        q = update(ComputeNode).where(ComputeNode.id == prov.node_id)
        if generation is not None:
            q = q.where(ComputeNode.generation == generation)
        done = s.execute(q.values(generation=ComputeNode.generation + 1, updated_at=utcnow(), **node_values)).rowcount
    else:
        q = update(ResourceProvider).where(ResourceProvider.id == prov.provider_id)
        if generation is not None:
            q = q.where(ResourceProvider.generation == generation)
        done = s.execute(q.values(generation=ResourceProvider.generation + 1, updated_at=utcnow())).rowcount
    if done != 1:
        raise _stale(prov.uuid)
    return prov.generation + 1 if generation is None else generation + 1


# --- providers -----------------------------------------------------------------------------------------------------

def create_provider(s: Session, uuid: str, name: str, parent_uuid: str | None) -> str:
    if view.provider(s, uuid) is not None:
        raise _conflict(f"Conflicting resource provider uuid: {uuid} already exists.", "placement.duplicate_uuid")
    if view.name_taken(s, name):
        raise _conflict(f"Conflicting resource provider name: {name} already exists.", "placement.duplicate_name")
    root = uuid
    if parent_uuid is not None:
        parent = view.provider(s, parent_uuid)
        if parent is None:
            raise ConductorError(400, f"parent provider UUID cannot be found: {parent_uuid}",
                                 "placement.undefined_code")
        root = parent.root_uuid
    s.add(ResourceProvider(uuid=uuid, name=name, parent_provider_uuid=parent_uuid, root_provider_uuid=root))
    return uuid


def update_provider(s: Session, uuid: str, name: str, parent_uuid: str | None) -> None:
    prov = _provider(s, uuid)
    if prov.is_compute:
        if name != prov.name or parent_uuid is not None:
            raise ConductorError(400, f"Resource provider {uuid} is compute host {prov.host}: its name is the "
                                      f"hypervisor hostname and it has no parent.", "placement.undefined_code")
        return
    if view.name_taken(s, name, except_uuid=uuid):
        raise _conflict(f"Conflicting resource provider name: {name} already exists.", "placement.duplicate_name")
    if parent_uuid != prov.parent_uuid:
        if prov.parent_uuid is not None:
            raise ConductorError(400, "Un-parenting a provider needs microversion 1.37; re-parenting is not "
                                      "supported here.", "placement.undefined_code")
        parent = view.provider(s, parent_uuid) if parent_uuid else None
        if parent is None or parent.root_uuid == prov.root_uuid:
            raise ConductorError(400, f"parent provider UUID cannot be found or would make a loop: {parent_uuid}",
                                 "placement.undefined_code")
        s.execute(update(ResourceProvider).where(ResourceProvider.root_provider_uuid == prov.uuid)
                  .values(root_provider_uuid=parent.root_uuid))
    s.execute(update(ResourceProvider).where(ResourceProvider.id == prov.provider_id).values(
        name=name, parent_provider_uuid=parent_uuid, generation=ResourceProvider.generation + 1,
        updated_at=utcnow()))


def delete_provider(s: Session, uuid: str) -> None:
    prov = _provider(s, uuid)
    if prov.is_compute:
        raise _conflict(f"Resource provider {uuid} is compute host {prov.host}: it goes with its compute service "
                        f"(openstack compute service delete).", "placement.resource_provider.inuse")
    if s.scalar(select(ConsumerAllocation.id).where(ConsumerAllocation.provider_id == prov.provider_id)):
        raise _conflict(f"Unable to delete resource provider {uuid}: Resource provider has allocations.",
                        "placement.resource_provider.inuse")
    if s.scalar(select(ResourceProvider.id).where(ResourceProvider.parent_provider_uuid == uuid)):
        raise _conflict(f"Unable to delete parent resource provider {uuid}: It has child resource providers.",
                        "placement.resource_provider.cannot_delete_parent")
    s.execute(delete(ProviderTrait).where(ProviderTrait.provider_uuid == uuid))
    s.execute(delete(ProviderAggregate).where(ProviderAggregate.provider_uuid == uuid))
    s.execute(delete(ResourceProvider).where(ResourceProvider.id == prov.provider_id))


# --- inventories ---------------------------------------------------------------------------------------------------

def _check_inventory(rc: str, inv: dict) -> None:
    if inv["reserved"] > inv["total"]:
        raise ConductorError(400, f"Unable to update inventory for resource provider: reserved ({inv['reserved']}) "
                                  f"of {rc} is above its total ({inv['total']}).", "placement.undefined_code")
    if inv["min_unit"] > inv["max_unit"]:
        raise ConductorError(400, f"min_unit of {rc} is above its max_unit.", "placement.undefined_code")


def set_inventories(s: Session, uuid: str, generation: int, inventories: dict[str, dict],
                    replace: bool = True) -> int:
    """PUT /resource_providers/{uuid}/inventories (``replace``: classes not given are deleted) or one class's PUT;
    the provider's new generation. Capacity below what is allocated is 409 placement.inventory.inuse."""
    prov = _provider(s, uuid)
    if prov.generation != generation:
        raise _stale(uuid)
    for rc in inventories:
        if not view.resource_class_exists(s, rc):
            raise ConductorError(400, f"Unknown resource class in inventory for resource provider {uuid}: {rc}",
                                 "placement.undefined_code")
    removed = [rc for rc in prov.inventories if rc not in inventories] if replace else []
    for rc in removed:
        if prov.usages.get(rc):
            raise _conflict(f"Inventory for {rc} on resource provider {uuid} in use.", INUSE)
    for rc, inv in inventories.items():
        _check_inventory(rc, inv)
        used = prov.usages.get(rc, 0)
        if used > (inv["total"] - inv["reserved"]) * inv["allocation_ratio"]:
            raise _conflict(f"Unable to update inventory for resource provider {uuid}: {rc} would have a capacity "
                            f"of {(inv['total'] - inv['reserved']) * inv['allocation_ratio']:g} and {used} is "
                            f"allocated.", INUSE)
    if prov.is_compute:
        return _set_node_inventories(s, prov, generation, inventories, removed)
    for rc in removed:
        s.execute(delete(ProviderInventory).where(ProviderInventory.provider_id == prov.provider_id,
                                                  ProviderInventory.resource_class == rc))
    for rc, inv in inventories.items():
        row = s.scalars(select(ProviderInventory).where(ProviderInventory.provider_id == prov.provider_id,
                                                        ProviderInventory.resource_class == rc)).first()
        if row is None:
            s.add(ProviderInventory(provider_id=prov.provider_id, resource_class=rc, **inv))
        else:
            for k, v in inv.items():
                setattr(row, k, v)
    return _bump(s, prov, generation)


def _set_node_inventories(s: Session, prov: view.Provider, generation: int, inventories: dict[str, dict],
                          removed: list[str]) -> int:
    if removed:
        raise _conflict(f"Resource provider {prov.uuid} is compute host {prov.host}: its {', '.join(removed)} "
                        f"inventory comes from its driver and cannot be deleted; set its reserved to its total to "
                        f"take it out of service.", INUSE)
    values = {}
    for rc, inv in inventories.items():
        if rc not in view.COMPUTE_CLASSES:
            raise ConductorError(400, f"Resource provider {prov.uuid} is compute host {prov.host}: it has VCPU, "
                                      f"MEMORY_MB and DISK_GB inventories only, not {rc}.", "placement.undefined_code")
        if inv["min_unit"] != 1 or inv["step_size"] != 1 or inv["max_unit"] not in (inv["total"], view.MAX_INT):
            raise ConductorError(400, f"Resource provider {prov.uuid} is compute host {prov.host}: its {rc} "
                                      f"min_unit and step_size are 1 and its max_unit is its total.",
                                 "placement.undefined_code")
        total_col, reserved_col, ratio_col, _ = view.COMPUTE_CLASSES[rc]
        values.update({total_col: inv["total"], reserved_col: inv["reserved"], ratio_col: inv["allocation_ratio"]})
    return _bump(s, prov, generation, **values)


def delete_inventory(s: Session, uuid: str, rc: str | None) -> None:
    """DELETE one class's inventory (``rc``) or all of them (1.5)."""
    prov = _provider(s, uuid)
    if rc is not None and rc not in prov.inventories:
        raise ConductorError(404, f"No inventory of class {rc} found for delete", "placement.undefined_code")
    keep = {k: v for k, v in prov.inventories.items() if rc is not None and k != rc}
    set_inventories(s, uuid, prov.generation, keep)


# --- allocations ---------------------------------------------------------------------------------------------------

def put_allocations(s: Session, consumer: str, allocations: dict[str, dict[str, int]], project_id: str,
                    user_id: str, consumer_generation: int | None, check_generation: bool,
                    consumer_type: str = "UNKNOWN") -> None:
    """Replace what ``consumer`` holds on hand-added providers (an empty ``allocations`` removes it all)."""
    current = view.consumer_view(s, consumer)
    if current.managed_by_claim:
        raise _conflict(f"Consumer {consumer} is a server or a move of one: its allocation is its claim's, "
                        f"written by Stratus's conductor only.", "placement.undefined_code")
    row = s.get(Consumer, consumer, with_for_update=True)
    if check_generation and (row.generation if row is not None else None) != consumer_generation:
        raise _conflict(f"consumer generation conflict - expected {consumer_generation} but got "
                        f"{row.generation if row is not None else None}", CONCURRENT)
    touched = set(current.allocations)
    s.execute(delete(ConsumerAllocation).where(ConsumerAllocation.consumer_uuid == consumer))
    for uuid, resources in allocations.items():
        prov = view.provider(s, uuid)
        if prov is None:
            raise ConductorError(400, f"Allocation for resource provider '{uuid}' that does not exist.",
                                 "placement.undefined_code")
        if prov.is_compute:
            raise _conflict(f"Resource provider {uuid} is compute host {prov.host}: only server claims allocate "
                            f"its resources.", "placement.undefined_code")
        for rc, amount in resources.items():
            if rc not in prov.inventories:
                raise _conflict(f"Unable to allocate inventory: Inventory for '{rc}' on resource provider "
                                f"'{uuid}' invalid.", "placement.undefined_code")
            if not prov.fits(rc, amount):
                raise _conflict(f"Unable to allocate inventory: Unable to create allocation for '{rc}' on resource "
                                f"provider '{uuid}'. The requested amount would exceed the capacity.",
                                "placement.undefined_code")
            s.add(ConsumerAllocation(consumer_uuid=consumer, provider_id=prov.provider_id, resource_class=rc,
                                     used=amount))
        touched.add(uuid)
    for uuid in touched:
        _bump(s, _provider(s, uuid), None)
    if not allocations:
        if row is not None:
            s.delete(row)
        return
    if row is None:
        s.add(Consumer(uuid=consumer, project_id=project_id, user_id=user_id, consumer_type=consumer_type,
                       generation=1))
    else:
        row.project_id, row.user_id, row.consumer_type = project_id, user_id, consumer_type
        row.generation += 1
    s.flush()


def delete_allocations(s: Session, consumer: str) -> None:
    """DELETE /allocations/{consumer}: a hand-added consumer's, or a server's that outlived it (an orphan, as
    ``nova-manage placement audit --delete`` removes); a live server's claim is the conductor's."""
    current = view.consumer_view(s, consumer)
    if not current.allocations:
        raise ConductorError(404, f"No allocations for consumer '{consumer}'", "placement.undefined_code")
    if current.managed_by_claim:
        if consumer not in {o["instance_uuid"] for o in orphaned_allocations(s)}:
            raise _conflict(f"Consumer {consumer} is a live server or a move in progress: its allocation is "
                            f"released by deleting the server or finishing the move.", "placement.undefined_code")
        release_allocation(s, consumer)
        return
    put_allocations(s, consumer, {}, "", "", None, False)


# --- resource classes, traits, provider traits and aggregates ------------------------------------------------------

def ensure_resource_class(s: Session, name: str, must_be_new: bool) -> bool:
    """Create a custom class; True if created. ``must_be_new``: an existing one is 409."""
    if view.resource_class_exists(s, name):
        if must_be_new:
            raise _conflict(f"Conflicting resource class already exists: {name}", "placement.duplicate_name")
        return False
    s.add(CustomResourceClass(name=name))
    return True


def delete_resource_class(s: Session, name: str) -> None:
    if name in view.STANDARD_CLASSES:
        raise ConductorError(400, f"Cannot delete standard resource class {name}", "placement.undefined_code")
    row = s.scalars(select(CustomResourceClass).where(CustomResourceClass.name == name)).first()
    if row is None:
        raise ConductorError(404, f"No such resource class {name}.", "placement.undefined_code")
    if s.scalar(select(ProviderInventory.id).where(ProviderInventory.resource_class == name)):
        raise _conflict(f"Unable to delete resource class {name}. Class is in use in inventory.",
                        "placement.undefined_code")
    s.delete(row)


def ensure_trait(s: Session, name: str) -> bool:
    if view.trait_exists(s, name):
        return False
    s.add(CustomTrait(name=name))
    return True


def delete_trait(s: Session, name: str) -> None:
    if name in view.STANDARD_TRAITS:
        raise ConductorError(400, f"Cannot delete standard trait {name}.", "placement.undefined_code")
    row = s.scalars(select(CustomTrait).where(CustomTrait.name == name)).first()
    if row is None:
        raise ConductorError(404, f"No such trait(s): {name}.", "placement.undefined_code")
    if s.scalar(select(func.count()).select_from(ProviderTrait).where(ProviderTrait.trait == name)):
        raise _conflict(f"The trait {name} is in use by a resource provider.", "placement.undefined_code")
    s.delete(row)


def set_provider_traits(s: Session, uuid: str, generation: int | None, traits: list[str]) -> int:
    """Replace the provider's traits (``generation`` None: the DELETE, which takes no generation)."""
    prov = _provider(s, uuid)
    unknown = sorted(t for t in traits if not view.trait_exists(s, t))
    if unknown:
        raise ConductorError(400, f"No such trait(s): {', '.join(unknown)}", "placement.undefined_code")
    new_generation = _bump(s, prov, generation)
    s.execute(delete(ProviderTrait).where(ProviderTrait.provider_uuid == uuid))
    for t in sorted(set(traits)):
        s.add(ProviderTrait(provider_uuid=uuid, trait=t))
    return new_generation


def set_provider_aggregates(s: Session, uuid: str, generation: int | None, aggregates: list[str]) -> int:
    """Replace the provider's aggregates. A compute node's are host aggregates: its host joins and leaves them
    (each uuid must be a host aggregate's, and none may put the host in two availability zones)."""
    prov = _provider(s, uuid)
    new_generation = _bump(s, prov, generation)
    wanted = set(aggregates)
    if not prov.is_compute:
        s.execute(delete(ProviderAggregate).where(ProviderAggregate.provider_uuid == uuid))
        for agg in sorted(wanted):
            s.add(ProviderAggregate(provider_uuid=uuid, aggregate_uuid=agg))
        return new_generation
    rows = {a.uuid: a for a in s.scalars(select(Aggregate).where(Aggregate.uuid.in_(wanted)))}
    missing = sorted(wanted - set(rows))
    if missing:
        raise ConductorError(400, f"Resource provider {uuid} is compute host {prov.host}: its aggregates are host "
                                  f"aggregates, and {', '.join(missing)} is not one (openstack aggregate create).",
                             "placement.undefined_code")
    zones = set(s.scalars(select(AggregateMetadata.value).where(
        AggregateMetadata.aggregate_id.in_([a.id for a in rows.values()]),
        AggregateMetadata.key == "availability_zone")))
    if len(zones) > 1:
        raise _conflict(f"Host {prov.host} cannot be in availability zones {', '.join(sorted(zones))} at once.",
                        "placement.undefined_code")
    s.execute(delete(AggregateHost).where(AggregateHost.host == prov.host,
                                          AggregateHost.aggregate_id.not_in([a.id for a in rows.values()])))
    have = set(s.scalars(select(AggregateHost.aggregate_id).where(AggregateHost.host == prov.host)))
    for agg in rows.values():
        if agg.id not in have:
            s.add(AggregateHost(aggregate_id=agg.id, host=prov.host))
    return new_generation

