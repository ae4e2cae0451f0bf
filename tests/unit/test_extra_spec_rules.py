"""2.86: flavor extra specs checked against Nova's validators (known namespaces); nothing checked before."""
from __future__ import annotations

import pytest

from app.compute import extra_spec_rules as rules
from tests.unit.inprocess import inprocess_conductor, world  # noqa: F401 (fixtures)


@pytest.mark.parametrize("key, value, message", [
    ("hw:cpu_policy", "bogus", "Validation failed; 'bogus' is not one of: dedicated, shared, mixed."),
    ("hw:cpu_thread_policy", "never", "Validation failed; 'never' is not one of: prefer, isolate, require."),
    ("hw:watchdog_action", "explode", "is not one of: none, pause, poweroff, reset, disabled."),
    ("hw:numa_nodes", "0", "Validation failed; '0' is less than the min value of '1'."),
    ("hw:cpu_cores", "two", "Validation failed; 'two' is not a valid integer value."),
    ("hw:redirected_usb_ports", "16", "Validation failed; '16' is greater than the max value of '15'."),
    ("hw:boot_menu", "maybe", "Validation failed; 'maybe' is not a valid boolean-like value."),
    ("hw:mem_page_size", "huge", "Validation failed; 'huge' is not of the format "
                                 "'(large|small|any|\\d+([kKMGT]i?)?(b|bit|B)?)'."),
    ("hw:numa_cpus.0", "0-x", "is not of the format"),
    ("hw_rng:allowed", "sometimes", "is not a valid boolean-like value."),
    ("hw_video:ram_max_mb", "-1", "is less than the min value of '0'."),
    ("quota:cpu_shares_level", "max", "is not one of: custom, high, normal, low."),
    ("quota:disk_read_iops_sec", "-5", "is less than the min value of '0'."),
    ("os:secure_boot", "optional", "is not one of: disabled, required."),
    ("resources1:VCPU", "lots", "is not a valid integer value."),
    ("trait:CUSTOM_GOLD", "yes", "is not one of: required, forbidden."),
    ("pci_passthrough:alias", "gpu", "is not of the format"),
    ("group_policy", "any", "is not one of: isolate, none."),
    ("hw:no_such_thing", "1", "Validation failed; extra spec 'hw:no_such_thing' does not appear to be a valid "
                              "extra spec."),
    ("quota:bogus", "1", "does not appear to be a valid extra spec."),
    ("resources_g1:NOT_A_CLASS", "1", "does not appear to be a valid extra spec."),
])
def test_refused(key, value, message):
    with pytest.raises(rules.ExtraSpecError) as exc:
        rules.validate(key, value)
    assert message in str(exc.value)


@pytest.mark.parametrize("key, value", [
    ("hw:cpu_policy", "dedicated"), ("hw:cpu_thread_policy", "isolate"), ("hw:mem_page_size", "2MB"),
    ("hw:mem_page_size", "large"), ("hw:numa_nodes", "2"), ("hw:numa_mem.1", "1024"), ("hw:cpu_sockets", "1"),
    ("hw:boot_menu", "True"), ("hw:boot_menu", "no"), ("hw_rng:allowed", "yes"), ("quota:cpu_quota", "-1"),
    ("quota:vif_outbound_peak", "100"), ("hw_video:ram_max_mb", "64"), ("os:secure_boot", "required"),
    ("resources:CUSTOM_MAGIC", "1"), ("resources2:VGPU", "1"), ("trait1:HW_CPU_X86_AVX2", "required"),
    ("aggregate_instance_extra_specs:ssd", "true"), ("capabilities:cpu_info:arch", "x86_64"),
    ("pci_passthrough:alias", "a1:2, b2:1"), ("custom:anything", "goes"), ("no_namespace", "x"),
])
def test_accepted(key, value):
    rules.validate(key, value)


def _post(client, world, version: str, specs: dict):
    return client.post(f"/v2.1/flavors/{world.flavor_id}/os-extra_specs", json={"extra_specs": specs},
                       headers={**world.admin.headers, "OpenStack-API-Version": f"compute {version}"})


def test_validated_from_2_86_only(client, world):
    bad = {"hw:cpu_policy": "bogus"}
    assert _post(client, world, "2.85", bad).status_code == 200
    resp = _post(client, world, "2.86", bad)
    assert resp.status_code == 400
    assert resp.get_json()["badRequest"]["message"] == \
        "Validation failed; 'bogus' is not one of: dedicated, shared, mixed."
    put = client.put(f"/v2.1/flavors/{world.flavor_id}/os-extra_specs/hw:numa_nodes",
                     json={"hw:numa_nodes": "0"},
                     headers={**world.admin.headers, "OpenStack-API-Version": "compute 2.86"})
    assert put.status_code == 400 and "less than the min value of '1'" in put.get_json()["badRequest"]["message"]
    ok = _post(client, world, "2.86", {"hw:cpu_policy": "dedicated", "vendor:free_form": "x", "hw:numa_nodes": 1})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.get_json()["extra_specs"]["hw:numa_nodes"] == "1"
