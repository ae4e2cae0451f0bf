"""Compute drivers: one contract (base.py), several hypervisors, chosen by ``compute_driver``."""
from __future__ import annotations

import importlib

from core.settings import Settings
from drivers.base import ComputeDriver

# name -> "module:factory"; a factory takes (host, settings) and returns a ComputeDriver.
DRIVERS = {
    "fake": "drivers.fake_factory:make",
    "libvirt": "drivers.libvirt:make_driver",
    "vmware": "drivers.vmware:make_driver",
}


def load_driver(name: str, host: str, settings: Settings) -> ComputeDriver:
    try:
        module_name, factory = DRIVERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown compute_driver {name!r}; choose one of {', '.join(DRIVERS)}") from None
    return getattr(importlib.import_module(module_name), factory)(host, settings)


def capability(name: str, key: str) -> bool:
    """Driver ``name``'s declared capability ``key`` (its class's ``capabilities``), without contacting anything."""
    cls = _driver_class(name)
    return bool(cls.capabilities.get(key, False)) if cls is not None else True


def _driver_class(name: str) -> type[ComputeDriver] | None:
    import typing

    module_name, factory = DRIVERS[name].split(":")
    cls = typing.get_type_hints(getattr(importlib.import_module(module_name), factory)).get("return")
    return cls if isinstance(cls, type) and issubclass(cls, ComputeDriver) else None


def supports(name: str, method: str) -> bool:
    """Whether driver ``name`` implements the contract's optional ``method`` (not the base's
    NotImplementedError). Read from the factory's declared return class, so no hypervisor is contacted."""
    cls = _driver_class(name)
    if cls is None:
        return True  # unknown: let the compute step report it
    return getattr(cls, method) is not getattr(ComputeDriver, method)
