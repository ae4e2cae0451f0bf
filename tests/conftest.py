"""Run-wide test settings: how the suite splits across pytest-xdist workers (``make test`` runs two).

With ``--dist loadgroup`` each group below runs whole on one worker, so nothing the group shares is set up twice
or used by two workers at once:
- the functional tests on one backend's shared stack (the session ``stack`` fixture's parameter): one group per
  backend, so each stack starts once;
- every libvirt test (libvirtd, the guest network and the TCG guests are one machine-wide set), and the vmware
  tests (one vcsim);
- everything else by module, so a module's own fixtures (its stack, its private servers) start once.
"""
from __future__ import annotations

import pytest


def xdist_group_of(item: pytest.Item) -> str:
    backend = getattr(getattr(item, "callspec", None), "params", {}).get("stack")
    if isinstance(backend, str) and "functional" in item.path.parts:
        return f"stack-{backend}"
    if item.get_closest_marker("libvirt"):
        return "libvirt"
    if item.get_closest_marker("vmware"):
        return "vmware"
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))
