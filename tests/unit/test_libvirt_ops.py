"""The libvirt driver's diagnostics, crash dump, snapshot and same-host resize against a stand-in libvirt domain
(the qemu-img work is real). tests/integration/test_libvirt_actions.py and test_libvirt_resize.py do the same with
a real QEMU guest."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

libvirt = pytest.importorskip("libvirt")

from core.settings import Settings  # noqa: E402
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


def test_libvirt_rescues_resizes_and_live_migrates():
    assert supports("libvirt", "rescue") and supports("libvirt", "unrescue")
    assert all(supports("libvirt", call) for call in ("migrate_disk_and_power_off", "finish_migration",
                                                      "finish_revert_migration", "live_migrate",
                                                      "live_migration_abort", "live_migration_force_complete"))
    assert not supports("vmware", "finish_migration")


def test_live_migration_destination_xml_names_the_destinations_paths_and_listeners():
    import xml.etree.ElementTree as ET
    from drivers.libvirt import live_migration
    src = """<domain type='qemu'><name>u</name><os><kernel>/src/inst/_base/k</kernel></os><devices>
      <disk type='file' device='disk'><source file='/src/inst/u/disk'/><target dev='vda'/></disk>
      <disk type='file' device='disk'><source file='/src/inst/u/disk.config'/><readonly/><target dev='vdb'/></disk>
      <serial type='tcp'><source mode='bind' host='127.0.0.2' service='10001'/><log file='/src/inst/u/console.log'/>
      </serial><console type='tcp'><source mode='bind' host='127.0.0.2' service='10001'/></console>
      <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.2'><listen type='address' address='127.0.0.2'/>
      </graphics><disk type='file' device='disk'><source file='/elsewhere/src/inst/x'/><target dev='vdc'/></disk>
    </devices></domain>"""
    out = ET.fromstring(live_migration.destination_xml(src, "/src/inst/", {
        "instances_dir": "/dst/i", "console_listen": "127.0.0.3", "serial": ["127.0.0.3", 10007]}))
    assert out.find("./os/kernel").text == "/dst/i/_base/k"
    assert [d.find("source").get("file") for d in out.iterfind("./devices/disk")] == \
        ["/dst/i/u/disk", "/dst/i/u/disk.config", "/elsewhere/src/inst/x"]
    assert out.find("./devices/serial/log").get("file") == "/dst/i/u/console.log"
    assert [(d.find("source").get("host"), d.find("source").get("service"))
            for d in (out.find("./devices/serial"), out.find("./devices/console"))] == [("127.0.0.3", "10007")] * 2
    graphics = out.find("./devices/graphics")
    assert graphics.get("listen") == "127.0.0.3" and graphics.find("listen").get("address") == "127.0.0.3"


class Conn:
    """defineXML replaces the stand-in domain's definition (same name and uuid), as libvirt does."""

    def __init__(self, dom: "ResizeDomain"):
        self.dom = dom

    def isAlive(self) -> int:
        return 1

    def defineXML(self, xml: str) -> "ResizeDomain":
        self.dom.defined.append(xml)
        return self.dom


class ResizeDomain(Domain):
    def __init__(self, xml: str):
        super().__init__()
        self.defined = [xml]

    def XMLDesc(self, _flags: int) -> str:
        return self.defined[-1]

    def shutdownFlags(self, _flags: int) -> int:
        self.calls.append("acpi")
        self.state_code = libvirt.VIR_DOMAIN_SHUTOFF
        return 0

    def destroy(self) -> int:
        self.calls.append("destroy")
        self.state_code = libvirt.VIR_DOMAIN_SHUTOFF
        return 0

    def create(self) -> int:
        self.calls.append("create")
        self.state_code = libvirt.VIR_DOMAIN_RUNNING
        return 0

    def hasManagedSaveImage(self, _flags: int) -> int:
        return 0


def _vsize(path) -> int:
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True,
                                     text=True, check=True).stdout)["virtual-size"]


def _resize_setup(tmp_path, disk_size: int):
    """An instance of flavor 1 GiB (its disk ``disk_size`` bytes), a running stand-in domain, the new flavor."""
    import dataclasses
    import os

    from tests.unit.test_fake_driver import spec
    old = dataclasses.replace(spec(), uuid=str(uuid.uuid4()), root_gb=1, image=None)
    new = dataclasses.replace(old, flavor_name="big", flavor_id="2", vcpus=4, memory_mb=512, root_gb=2)
    dom = ResizeDomain("<domain>old</domain>")
    dom.uuid = old.uuid
    drv = _driver(tmp_path, dom)
    drv._connection, drv._conn_pid = Conn(dom), os.getpid()
    drv._find = lambda u: dom
    drv.domain_xml = lambda inst: f'<domain><nova:flavor name="{inst.flavor_name}" id="{inst.flavor_id}"/></domain>'
    drv.settings = dataclasses.replace(drv.settings, shutdown_timeout=5)
    (tmp_path / old.uuid).mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / old.uuid / "disk"), str(disk_size)],
                   check=True)
    return old, new, dom, drv


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")
def test_resize_never_shrinks_the_disk(tmp_path):
    from drivers.libvirt import imagecache
    old, new, dom, drv = _resize_setup(tmp_path, 3 * imagecache.GiB)  # larger than the new flavor's 2 GiB
    drv.migrate_disk_and_power_off(old.uuid)
    with pytest.raises(DriverError, match="^Unable to resize disk down.$"):
        drv.finish_migration(new, power_on=True)
    assert _vsize(tmp_path / old.uuid / "disk") == 3 * imagecache.GiB and dom.defined == ["<domain>old</domain>"]
    drv.finish_revert_migration(old.uuid, power_on=True)  # the failed resize can still be rolled back
    assert dom.calls == ["acpi", "create"] and not (tmp_path / f"{old.uuid}_resize").exists()


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")
def test_resize_on_this_host_grows_the_disk_and_revert_brings_back_the_old_one(tmp_path):
    from drivers.libvirt import imagecache
    gib = imagecache.GiB
    old, new, dom, drv = _resize_setup(tmp_path, gib)
    inst_dir, backup = tmp_path / old.uuid, tmp_path / f"{old.uuid}_resize"
    for _ in range(2):  # a redelivered step finds its work done
        drv.migrate_disk_and_power_off(old.uuid)
    assert dom.calls == ["acpi"] and sorted(p.name for p in backup.iterdir()) == ["disk", "domain.xml"]
    assert (backup / "domain.xml").read_text() == "<domain>old</domain>"
    for _ in range(2):
        drv.finish_migration(new, power_on=True)
    assert _vsize(inst_dir / "disk") == 2 * gib and _vsize(backup / "disk") == gib
    assert dom.calls == ["acpi", "create"] and 'name="big"' in dom.defined[-1]  # the retry saw it running

    for _ in range(2):
        drv.finish_revert_migration(old.uuid, power_on=True)
    assert _vsize(inst_dir / "disk") == gib and dom.defined[-1] == "<domain>old</domain>" and not backup.exists()
    assert dom.calls == ["acpi", "create", "destroy", "create"]

    drv.migrate_disk_and_power_off(old.uuid)
    drv.finish_migration(new, power_on=False)
    assert dom.state_code == libvirt.VIR_DOMAIN_SHUTOFF and _vsize(inst_dir / "disk") == 2 * gib
    for _ in range(2):
        drv.confirm_migration(old.uuid, dest_host=drv.host)
    assert not backup.exists() and (inst_dir / "disk").is_file() and 'name="big"' in dom.defined[-1]


class MigratingDomain(Domain):
    """migrateToURI3 blocks like a copy that does not converge, until abortJob (VIR_ERR_OPERATION_ABORTED) or a
    suspend (the paused guest's copy completes)."""

    def __init__(self):
        super().__init__()
        import threading
        self.wake, self.active, self.aborted, self.migrations = threading.Event(), False, False, []

    def migrateToURI3(self, uri: str, params: dict, flags: int) -> None:
        self.migrations.append((uri, params, flags))
        self.active = True
        try:
            assert self.wake.wait(10)
            if self.aborted:
                raise _error(libvirt.VIR_ERR_OPERATION_ABORTED)
        finally:
            self.active, self.aborted = False, False
            self.wake.clear()

    def jobInfo(self):
        return [libvirt.VIR_DOMAIN_JOB_UNBOUNDED if self.active else libvirt.VIR_DOMAIN_JOB_NONE] + [0] * 11

    def abortJob(self) -> None:
        self.aborted = True
        self.wake.set()

    def suspend(self) -> None:
        self.state_code = libvirt.VIR_DOMAIN_PAUSED
        self.wake.set()

    def resume(self) -> None:
        self.state_code = libvirt.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize("block", [True, False])
def test_live_migration_flags_and_source_files_follow_the_block_migration_choice(tmp_path, block):
    from drivers.libvirt import live_migration
    dom = MigratingDomain()
    dom.migrateToURI3 = lambda uri, params, flags: dom.migrations.append((uri, params, flags))  # copied at once
    drv = LibvirtDriver("lv-unit", Settings(instances_path=str(tmp_path), libvirt_virt_type="qemu"))
    drv._lookup = lambda u: dom
    (tmp_path / dom.uuid).mkdir()
    data = {"instances_dir": str(tmp_path), "console_listen": "127.0.0.3", "serial": None,
            "target_connect_addr": "127.0.0.1:16599", "block_migration": block}
    drv.live_migrate(dom.uuid, "lv-b", migrate_data=data)
    ((_, params, flags),) = dom.migrations
    assert bool(flags & libvirt.VIR_MIGRATE_NON_SHARED_INC) is block
    assert flags & ~libvirt.VIR_MIGRATE_NON_SHARED_INC == live_migration.FLAGS
    assert (libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS in params) is block
    assert (tmp_path / dom.uuid).exists() is not block  # shared storage: the files are the destination's now


def test_live_migration_is_peer_to_peer_block_migration_and_can_be_aborted_or_forced():
    import threading
    from drivers.base import LiveMigrationAborted
    from drivers.libvirt import live_migration
    dom = MigratingDomain()
    drv = LibvirtDriver("lv-unit", Settings(instances_path="/i", libvirt_virt_type="qemu"))
    drv._lookup = lambda u: dom
    data = {"instances_dir": "/dst", "console_listen": "127.0.0.3", "serial": None,
            "target_connect_addr": "127.0.0.1:16599"}

    def migrate() -> tuple[threading.Thread, dict]:
        started, outcome = threading.Event(), {}

        def run() -> None:
            try:
                outcome["result"] = drv.live_migrate(dom.uuid, "lv-b", on_started=started.set, migrate_data=data)
            except LiveMigrationAborted as exc:
                outcome["aborted"] = exc
        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(5) and dom.active  # on_started once libvirt reports the job
        return thread, outcome

    thread, outcome = migrate()
    uri, params, flags = dom.migrations[0]
    assert uri == "qemu+tcp://127.0.0.1:16599/system"
    assert flags == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                     | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_NON_SHARED_INC)
    assert f"/dst/{dom.uuid}/disk" in params[libvirt.VIR_MIGRATE_PARAM_DEST_XML]
    assert params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == ["vda", "vdb"]
    assert libvirt.VIR_MIGRATE_PARAM_URI not in params  # a loopback address: libvirt picks the host name's
    drv.live_migration_abort(dom.uuid)
    thread.join(5)
    assert "aborted" in outcome and dom.state_code == libvirt.VIR_DOMAIN_RUNNING
    with pytest.raises(DriverError, match="No live migration"):
        drv.live_migration_abort(dom.uuid)

    thread, outcome = migrate()
    drv.live_migration_force_complete(dom.uuid)  # pauses the guest: the copy converges
    thread.join(5)
    assert outcome == {"result": {"resume": True}}  # the destination resumes it
    with pytest.raises(DriverError, match="No live migration"):
        drv.live_migration_force_complete(dom.uuid)
