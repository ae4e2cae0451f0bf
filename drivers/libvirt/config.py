"""Domain XML for a Stratus instance (the shape follows nova/virt/libvirt/config.py's output)."""
from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from drivers.base import InstanceSpec

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
ET.register_namespace("nova", NOVA_NS)


@dataclass(frozen=True)
class DiskPaths:
    disk: str
    console_log: str
    kernel: str | None = None
    ramdisk: str | None = None
    cmdline: str | None = None
    config_drive: str | None = None  # ISO 9660 "config-2", attached read-only after the other disks
    #: Rescue (Nova's libvirt layout): ``disk`` is the rescue disk (vda) and this, the instance's own disk, vdb.
    second_disk: str | None = None


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _metadata(root: ET.Element, inst: InstanceSpec) -> None:
    md = _sub(root, "metadata")
    n = lambda tag: f"{{{NOVA_NS}}}{tag}"  # noqa: E731
    ins = _sub(md, n("instance"))
    _sub(ins, n("package"), version="stratus")
    _sub(ins, n("name"), inst.name)
    _sub(ins, n("creationTime"), datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))
    flavor = _sub(ins, n("flavor"), name=inst.flavor_name, id=str(inst.flavor_id))
    _sub(flavor, n("memory"), str(inst.memory_mb))
    _sub(flavor, n("disk"), str(inst.root_gb))
    _sub(flavor, n("swap"), "0")
    _sub(flavor, n("ephemeral"), "0")
    _sub(flavor, n("vcpus"), str(inst.vcpus))
    owner = _sub(ins, n("owner"))
    _sub(owner, n("user"), inst.user_id, uuid=inst.user_id)
    _sub(owner, n("project"), inst.project_id, uuid=inst.project_id)
    if inst.image is not None:
        _sub(ins, n("root"), type="image", uuid=inst.image.id)


def domain_xml(inst: InstanceSpec, paths: DiskPaths, virt_type: str, bridge: str = "",
               disk_format: str = "qcow2", listen: str = "127.0.0.1", mac: str | None = None,
               serial: tuple[str, int] | None = None) -> str:
    """Return the persistent domain XML for ``inst``: name and uuid are the instance UUID. ``serial``: the
    (address, port) the first serial port listens on for the serial console (else a pty)."""
    root = ET.Element("domain", type=virt_type)
    _sub(root, "name", inst.uuid)
    _sub(root, "uuid", inst.uuid)
    _sub(root, "title", inst.name)
    _metadata(root, inst)
    _sub(root, "memory", str(inst.memory_mb * 1024), unit="KiB")
    _sub(root, "currentMemory", str(inst.memory_mb * 1024), unit="KiB")
    _sub(root, "vcpu", str(inst.vcpus), placement="static")

    sysinfo = _sub(root, "sysinfo", type="smbios")
    system = _sub(sysinfo, "system")
    _sub(system, "entry", "OpenStack Foundation", name="manufacturer")
    _sub(system, "entry", "OpenStack Nova", name="product")
    _sub(system, "entry", "Stratus", name="version")
    _sub(system, "entry", inst.hostname or inst.uuid, name="serial")
    _sub(system, "entry", inst.uuid, name="uuid")
    _sub(system, "entry", "Virtual Machine", name="family")

    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    if paths.kernel:
        _sub(os_el, "kernel", paths.kernel)
        if paths.ramdisk:
            _sub(os_el, "initrd", paths.ramdisk)
        if paths.cmdline:
            _sub(os_el, "cmdline", paths.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")
    _sub(os_el, "smbios", mode="sysinfo")

    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if virt_type == "kvm":
        _sub(root, "cpu", mode="host-model", check="partial")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")

    dev = _sub(root, "devices")
    targets = iter("vd" + c for c in "abcdef")
    for path in (paths.disk, paths.second_disk):
        if path:
            disk = _sub(dev, "disk", type="file", device="disk")
            _sub(disk, "driver", name="qemu", type=disk_format, cache="none" if virt_type == "kvm" else "writeback")
            _sub(disk, "source", file=path)
            _sub(disk, "target", dev=next(targets), bus="virtio")

    if paths.config_drive:
        cd = _sub(dev, "disk", type="file", device="disk")
        _sub(cd, "driver", name="qemu", type="raw")
        _sub(cd, "source", file=paths.config_drive)
        _sub(cd, "target", dev=next(targets), bus="virtio")
        _sub(cd, "readonly")

    if bridge:
        nic = _sub(dev, "interface", type="bridge")
        _sub(nic, "source", bridge=bridge)
    else:
        nic = _sub(dev, "interface", type="user")
    if mac:
        _sub(nic, "mac", address=mac)
    _sub(nic, "model", type="virtio")

    # One serial port, logged (append) to console.log for get_console_output (virtlogd writes it whether or not
    # a client is connected): a raw TCP listener for the serial console proxy (Nova's _create_serial_consoles),
    # else a pty. libvirt adds the <console> that aliases it.
    if serial:
        port = _sub(dev, "serial", type="tcp")
        _sub(port, "source", mode="bind", host=serial[0], service=str(serial[1]))
        _sub(port, "protocol", type="raw")
    else:
        port = _sub(dev, "serial", type="pty")
    _sub(port, "log", file=paths.console_log, append="on")
    _sub(port, "target", port="0")

    _sub(dev, "input", type="tablet", bus="usb")
    for kind in ("vnc", "spice"):
        g = _sub(dev, "graphics", type=kind, port="-1", autoport="yes", listen=listen)
        _sub(g, "listen", type="address", address=listen)
    video = _sub(dev, "video")
    _sub(video, "model", type="qxl", vram="16384", heads="1")
    _sub(dev, "memballoon", model="virtio")
    rng = _sub(dev, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def graphics_port(xml: str, kind: str) -> tuple[str, int] | None:
    """(listen address, port) of the live domain's ``kind`` graphics, or None when not assigned."""
    root = ET.fromstring(xml)
    for g in root.iterfind("./devices/graphics"):
        if g.get("type") != kind:
            continue
        port = int(g.get("port") or -1)
        if port <= 0:
            return None
        return g.get("listen") or "127.0.0.1", port
    return None


def serial_listeners(xml: str) -> list[tuple[str, int]]:
    """(address, port) of each serial port of a domain that listens on TCP (mode bind), in device order."""
    out = []
    for dev in ET.fromstring(xml).iterfind("./devices/serial"):
        source = dev.find("source")
        if dev.get("type") == "tcp" and source is not None and source.get("mode") == "bind" \
                and (source.get("service") or "").isdigit():
            out.append((source.get("host") or "127.0.0.1", int(source.get("service"))))
    return out


def _bus_address(dev: ET.Element, target_bus: str | None = None) -> tuple[str | None, str | None]:
    """Nova's _prepare_device_bus: (bus, address) of a defined device; PCI when libvirt gave it a PCI address,
    else the disk's target bus (scsi/ide/usb) with the drive address."""
    addr = dev.find("address")
    if addr is not None and addr.get("type") == "pci":
        parts = [addr.get(k, "0x0")[2:] for k in ("domain", "bus", "slot", "function")]
        return "pci", "{}:{}:{}.{}".format(*parts)
    if target_bus in ("scsi", "ide", "usb"):
        address = None
        if addr is not None and addr.get("type") == "drive":
            address = ":".join(addr.get(k, "0") for k in ("controller", "bus", "target", "unit"))
        return target_bus, address
    return None, None


def device_buses(xml: str, macs: set[str], root_dev: str = "vda") -> dict[str, tuple[str | None, str | None]]:
    """(bus, address) of the defined domain's NICs whose MAC is in ``macs`` and of its root disk ("root")."""
    root = ET.fromstring(xml)
    out: dict[str, tuple[str | None, str | None]] = {}
    for nic in root.iterfind("./devices/interface"):
        mac = nic.find("mac")
        if mac is not None and mac.get("address") in macs:
            out[mac.get("address")] = _bus_address(nic)
    for disk in root.iterfind("./devices/disk"):
        target = disk.find("target")
        if target is not None and target.get("dev") == root_dev:
            out["root"] = _bus_address(disk, target.get("bus"))
    return out
