"""The libvirt driver's diagnostics, crash dump and snapshot against a stand-in libvirt domain (the qemu-img work of
the snapshot is real). tests/integration/test_libvirt_actions.py does the same with a real QEMU guest."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

libvirt = pytest.importorskip("libvirt")

from app.settings import Settings  # noqa: E402
from drivers import supports  # noqa: E402
from drivers.base import DriverError  # noqa: E402
from drivers.libvirt import LibvirtDriver  # noqa: E402
from drivers.libvirt.diagnostics import diagnostics  # noqa: E402

XML = """<domain type='qemu'><name>{uuid}</name><devices>
  <disk type='file' device='disk'><source file='/i/{uuid}/disk'/><target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='disk'><source file='/i/{uuid}/disk.config'/><target dev='vdb' bus='virtio'/></disk>
  <interface type='bridge'><mac address='fa:16:3e:00:00:01'/><target dev='vnet7'/></interface>
  <interface type='user'><mac address='52:54:00:aa:bb:cc'/></interface>
</devices></domain>"""


def _error(code: int) -> libvirt.libvirtError:
    exc = libvirt.libvirtError("stand-in")
    exc.err = (code, 0, "stand-in error", 0, "", None, None, 0, 0)
    return exc


class Domain:
    """The virDomain calls the driver makes, with recorded side effects."""

    def __init__(self, state: int = libvirt.VIR_DOMAIN_RUNNING, nmi_error: int | None = None):
        self.uuid, self.state_code, self.nmi_error, self.calls = str(uuid.uuid4()), state, nmi_error, []

    def name(self) -> str:
        return self.uuid

    def info(self):
        return [self.state_code, 262144, 262144, 2, 7_000_000_000]

    def state(self):
        return [self.state_code, 0]

    def isActive(self) -> int:
        return int(self.state_code in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED))

    def XMLDesc(self, _flags: int) -> str:
        return XML.format(uuid=self.uuid)

    def vcpus(self):
        return [(0, 1, 3_000_000_000, 0), (1, 1, 4_000_000_000, 1)], [(True,), (True,)]

    def blockStats(self, dev: str):
        return {"vda": (10, 4096, 3, 1536, 0), "vdb": (2, 2048, 0, 0, 0)}[dev]

    def interfaceStats(self, dev: str):
        if dev != "vnet7":
            raise _error(libvirt.VIR_ERR_INVALID_ARG)
        return (1000, 10, 1, 2, 500, 5, 0, 0)

    def memoryStats(self):
        return {"actual": 262144, "rss": 102400}

    def injectNMI(self, _flags: int) -> int:
        self.calls.append("nmi")
        if self.nmi_error is not None:
            raise _error(self.nmi_error)
        return 0

    def suspend(self) -> int:
        self.calls.append("suspend")
        self.state_code = libvirt.VIR_DOMAIN_PAUSED
        return 0

    def resume(self) -> int:
        self.calls.append("resume")
        self.state_code = libvirt.VIR_DOMAIN_RUNNING
        return 0


def _driver(tmp_path, dom: Domain) -> LibvirtDriver:
    drv = LibvirtDriver("lv-unit", Settings(instances_path=str(tmp_path), libvirt_virt_type="qemu"))
    drv._lookup = lambda u: dom if u == dom.uuid else (_ for _ in ()).throw(AssertionError(u))
    return drv


def test_diagnostics_map_the_domain_stats_to_novas_standard_format():
    dom = Domain()
    d = diagnostics(dom, "qemu", uptime=42)
    assert d["state"] == "running" and d["driver"] == "libvirt" and d["hypervisor"] == "qemu"
    assert d["hypervisor_os"] == "linux" and d["uptime"] == 42 and d["config_drive"] is True
    assert (d["num_cpus"], d["num_nics"], d["num_disks"]) == (2, 2, 2)
    assert d["cpu_details"] == [{"id": 0, "time": 3_000_000_000, "utilisation": None},
                                {"id": 1, "time": 4_000_000_000, "utilisation": None}]
    assert d["memory_details"] == {"maximum": 256, "used": 100}  # the QEMU process's resident memory
    assert d["disk_details"][0] == {"read_bytes": 4096, "read_requests": 10, "write_bytes": 1536,
                                    "write_requests": 3, "errors_count": 0}
    bridged, user = d["nic_details"]
    assert bridged == {"mac_address": "fa:16:3e:00:00:01", "rx_octets": 1000, "rx_packets": 10, "rx_errors": 1,
                       "rx_drop": 2, "tx_octets": 500, "tx_packets": 5, "tx_errors": 0, "tx_drop": 0,
                       "rx_rate": None, "tx_rate": None}
    assert user["mac_address"] == "52:54:00:aa:bb:cc" and user["rx_octets"] == 0  # no host device: no stats


def test_diagnostics_prefer_the_guests_balloon_report_and_show_a_stopped_guest():
    dom = Domain()
    dom.memoryStats = lambda: {"actual": 262144, "available": 250000, "unused": 150000, "rss": 300000}
    assert diagnostics(dom, "kvm", uptime=1)["memory_details"]["used"] == 97
    dom = Domain(state=libvirt.VIR_DOMAIN_SHUTOFF)
    dom.vcpus = lambda: (_ for _ in ()).throw(_error(libvirt.VIR_ERR_OPERATION_INVALID))
    d = diagnostics(dom, "qemu")
    assert d["state"] == "shutdown" and d["uptime"] == 0 and d["cpu_details"] == []
    assert d["memory_details"] == {"maximum": 256, "used": 0}


def test_trigger_crash_dump_injects_an_nmi_and_maps_novas_errors(tmp_path):
    dom = Domain()
    _driver(tmp_path, dom).trigger_crash_dump(dom.uuid)
    assert dom.calls == ["nmi"]
    for code, message in ((libvirt.VIR_ERR_NO_SUPPORT, "Triggering crash dump is not supported"),
                          (libvirt.VIR_ERR_OPERATION_INVALID, "is not running")):
        dom = Domain(nmi_error=code)
        with pytest.raises(DriverError, match=message):
            _driver(tmp_path, dom).trigger_crash_dump(dom.uuid)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")
@pytest.mark.parametrize("disk_format,qemu_format", [("qcow2", "qcow2"), ("raw", "raw")])
def test_snapshot_pauses_a_running_guest_and_writes_a_standalone_image(tmp_path, disk_format, qemu_format):
    dom = Domain()
    inst_dir = tmp_path / dom.uuid
    inst_dir.mkdir()
    base, disk = tmp_path / "base.qcow2", inst_dir / "disk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk), "32M"],
                   check=True)
    with _driver(tmp_path, dom).snapshot(dom.uuid, disk_format) as stream:
        data = stream.read()
    assert dom.calls == ["suspend", "resume"] and dom.state_code == libvirt.VIR_DOMAIN_RUNNING
    assert sorted(p.name for p in inst_dir.iterdir()) == [".lock", "disk"]  # the snapshot file is unlinked
    out = tmp_path / "snap"
    out.write_bytes(data)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(out)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["format"] == qemu_format and info["virtual-size"] == 32 << 20
    assert "backing-filename" not in info


def test_snapshot_leaves_a_paused_guest_paused_and_refuses_unknown_formats(tmp_path):
    dom = Domain(state=libvirt.VIR_DOMAIN_PAUSED)
    (tmp_path / dom.uuid).mkdir()
    with pytest.raises(DriverError, match="Cannot snapshot to disk format 'iso'"):
        _driver(tmp_path, dom).snapshot(dom.uuid, "iso")
    assert dom.calls == []


def test_the_api_no_longer_refuses_these_actions_for_libvirt():
    for method in ("get_diagnostics", "trigger_crash_dump", "snapshot"):
        assert supports("libvirt", method), method


def test_rescue_xml_boots_the_rescue_disk_with_the_own_disk_second():
    import xml.etree.ElementTree as ET

    from drivers.libvirt import config
    from tests.unit.test_fake_driver import spec
    paths = config.DiskPaths(disk="/i/u/disk.rescue", console_log="/i/u/console.log", second_disk="/i/u/disk",
                             config_drive="/i/u/disk.config")
    root = ET.fromstring(config.domain_xml(spec(), paths, "qemu"))
    disks = [(d.find("source").get("file"), d.find("target").get("dev")) for d in root.iterfind("./devices/disk")]
    assert disks == [("/i/u/disk.rescue", "vda"), ("/i/u/disk", "vdb"), ("/i/u/disk.config", "vdc")]
    plain = ET.fromstring(config.domain_xml(spec(), config.DiskPaths(disk="/i/u/disk", console_log="/c"), "qemu"))
    assert [d.find("target").get("dev") for d in plain.iterfind("./devices/disk")] == ["vda"]


def test_libvirt_rescues_and_resizes_but_refuses_live_migration():
    assert supports("libvirt", "rescue") and supports("libvirt", "unrescue")
    assert all(supports("libvirt", call) for call in ("migrate_disk_and_power_off", "finish_migration",
                                                      "finish_revert_migration"))
    assert not supports("libvirt", "live_migrate") and not supports("vmware", "finish_migration")
