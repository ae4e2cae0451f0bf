"""An operator's policy file (STRATUS_POLICY_FILE) overrides Nova-named rules in the running API."""
from __future__ import annotations

import pytest

from tests.functional.test_admin_apis import make_member
from harness.stack import BACKENDS, Stack

pytestmark = pytest.mark.services


@pytest.mark.slow
def test_policy_file_forbids_member_server_create(tmp_path):
    backend = BACKENDS["sqlite-filesystem"]
    policy = tmp_path / "policy.yaml"
    policy.write_text('"os_compute_api:servers:create": "rule:admin_api"\n')
    st = Stack(tmp_path / "state", backend, compute_hosts="fake-1", extra_env={"STRATUS_POLICY_FILE": str(policy)})
    try:
        st.start()
        image_file = tmp_path / "disk.img"
        image_file.write_bytes(b"\x00" * 1024)
        st.openstack("image", "create", "--file", str(image_file), "--disk-format", "raw", "--container-format",
                     "bare", "--public", "pol-image")
        name, password, _ = make_member(st)
        as_member = {"user": name, "password": password, "project": name}
        proc = st.openstack("server", "create", "--image", "pol-image", "--flavor", "m1.nano",
                            "member-vm", check=False, **as_member)
        assert proc.returncode != 0 and "403" in proc.stderr
        assert "os_compute_api:servers:create" in proc.stderr
        # Rules the file does not name keep their defaults: the member still lists servers and flavors.
        assert st.openstack_json("server", "list", **as_member) == []
        st.openstack("server", "create", "--image", "pol-image", "--flavor", "m1.nano", "admin-vm")
        admin_vm = st.wait_server("admin-vm", "ACTIVE")
        assert admin_vm["status"] == "ACTIVE"
    finally:
        st.stop()
