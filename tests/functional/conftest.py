from __future__ import annotations

import pytest

from tests.stack import BACKENDS, Stack


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
    st.stop()
