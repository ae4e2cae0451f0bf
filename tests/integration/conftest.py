"""Fixtures shared by the integration tests."""
from __future__ import annotations

import pytest

from tests import vcsim as vcsim_mod


@pytest.fixture(scope="session")
def vcsim():
    """One vCenter simulator for the session (tools/build-vcsim builds it from Debian's govmomi packages)."""
    why = vcsim_mod.unavailable()
    if why:
        pytest.skip(f"!!! VMWARE TESTS SKIPPED: vcsim cannot be built: {why}. "
                    "Install: apt-get install -y golang-go golang-github-vmware-govmomi-dev !!!")
    with vcsim_mod.run(vcsim_mod.build()) as sim:
        yield sim
