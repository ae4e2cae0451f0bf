from __future__ import annotations

import uuid

import pytest

from harness.stack import BACKENDS, Stack
from tests.functional import secret_scan


@pytest.fixture(scope="session", params=list(BACKENDS), ids=list(BACKENDS))
def stack(request, tmp_path_factory):
    backend = BACKENDS[request.param]
    missing = backend.missing()
    if missing:
        # Loud on purpose: CI machines run every service, so a skip here means a broken machine.
        pytest.skip(f"!!! BACKEND {backend.name} UNAVAILABLE: {missing} !!!")
    st = Stack(tmp_path_factory.mktemp(backend.name), backend)
    try:
        st.start()
    except Exception:
        st.stop()
        raise
    yield st
    # After the whole session's work on this stack: no admin password, token or private key in any log file
    # or stored task result (tests/functional/test_flower_and_secrets.py scans for more, Flower included).
    try:
        leaks = secret_scan.scan(st, secret_scan.places(st))
    finally:
        st.stop()
    assert not leaks, f"secrets in the {backend.name} stack's logs or results:\n" + "\n".join(leaks)


@pytest.fixture
def image(stack, tmp_path):
    """A small public raw image made with the CLI, deleted afterwards; its name."""
    name = f"img-{uuid.uuid4().hex[:6]}"
    f = tmp_path / "disk.img"
    f.write_bytes(b"\x00" * 1024)
    stack.openstack("image", "create", "--file", str(f), "--disk-format", "raw", "--container-format", "bare",
                    "--public", name)
    yield name
    stack.openstack("image", "delete", name, check=False)


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.backends(...)``: run a module's per-backend tests on those backends only (the API-breadth
    scenarios need one production DB/broker pair each, not all three, to keep CI short)."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("stack")
        (drop if marker and backend and backend not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
