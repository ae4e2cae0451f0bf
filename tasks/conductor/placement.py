"""The conductor's calls behind the Placement API (core/writes/placement.py does the writes): each one
transaction, its domain errors carrying Placement's error code."""
from __future__ import annotations

from sqlalchemy.orm import Session

from core.writes import placement as writes
from tasks.conductor.common import rpc


@rpc("placement_create_provider")
def create_provider(s: Session, uuid: str, name: str, parent_uuid: str | None) -> str:
    return writes.create_provider(s, uuid, name, parent_uuid)


@rpc("placement_update_provider")
def update_provider(s: Session, uuid: str, name: str, parent_uuid: str | None) -> None:
    writes.update_provider(s, uuid, name, parent_uuid)


@rpc("placement_delete_provider")
def delete_provider(s: Session, uuid: str) -> None:
    writes.delete_provider(s, uuid)


@rpc("placement_set_inventories")
def set_inventories(s: Session, uuid: str, generation: int, inventories: dict, replace: bool) -> int:
    return writes.set_inventories(s, uuid, generation, inventories, replace)


@rpc("placement_delete_inventory")
def delete_inventory(s: Session, uuid: str, resource_class: str | None) -> None:
    writes.delete_inventory(s, uuid, resource_class)


@rpc("placement_put_allocations")
def put_allocations(s: Session, items: list[dict]) -> None:
    """One or several consumers' allocations (POST /allocations), all or none."""
    for item in items:
        writes.put_allocations(s, item["consumer"], item["allocations"], item["project_id"], item["user_id"],
                               item.get("consumer_generation"), item["check_generation"],
                               item.get("consumer_type") or "UNKNOWN")


@rpc("placement_delete_allocations")
def delete_allocations(s: Session, consumer: str) -> None:
    writes.delete_allocations(s, consumer)


@rpc("placement_ensure_resource_class")
def ensure_resource_class(s: Session, name: str, must_be_new: bool) -> bool:
    return writes.ensure_resource_class(s, name, must_be_new)


@rpc("placement_delete_resource_class")
def delete_resource_class(s: Session, name: str) -> None:
    writes.delete_resource_class(s, name)


@rpc("placement_ensure_trait")
def ensure_trait(s: Session, name: str) -> bool:
    return writes.ensure_trait(s, name)


@rpc("placement_delete_trait")
def delete_trait(s: Session, name: str) -> None:
    writes.delete_trait(s, name)


@rpc("placement_set_provider_traits")
def set_provider_traits(s: Session, uuid: str, generation: int | None, traits: list[str]) -> int:
    return writes.set_provider_traits(s, uuid, generation, traits)


@rpc("placement_set_provider_aggregates")
def set_provider_aggregates(s: Session, uuid: str, generation: int | None, aggregates: list[str]) -> int:
    return writes.set_provider_aggregates(s, uuid, generation, aggregates)
