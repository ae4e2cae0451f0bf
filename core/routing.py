"""Where each task goes: conductor and scheduler queues, and one queue per compute host."""
from __future__ import annotations

from typing import Any


def compute_queue(host: str) -> str:
    return f"compute.{host}"


def route_task(name: str, args: Any, kwargs: Any, options: dict, task: Any = None, **_: Any) -> dict | None:
    if name.startswith("stratus.conductor."):
        return {"queue": "conductor"}
    if name.startswith("stratus.scheduler."):
        return {"queue": "scheduler"}
    if name.startswith("stratus.compute."):
        if options.get("queue"):
            return None
        # Compute steps receive the boot/action context (a dict of IDs) as their first argument.
        ctx = args[0] if args else (kwargs or {}).get("ctx")
        if not isinstance(ctx, dict) or not ctx.get("host"):
            raise ValueError(f"compute task {name} sent without a host to route to")
        return {"queue": compute_queue(ctx["host"])}
    return None
