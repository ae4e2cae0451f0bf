"""Pick the domain type for ``libvirt_virt_type=auto``: KVM only when it demonstrably runs guests well.

Capabilities can list ``kvm`` while guests do not boot (nested KVM on some clouds runs them with no progress, or
far slower than plain TCG emulation). So we boot a 512-byte boot sector that writes one byte to the serial port,
once under ``qemu`` (TCG) and once under ``kvm``, as transient domains, and use ``kvm`` only if its guest wrote the
byte and was not slower than TCG's. The answer is cached in ``<instances_dir>/.virt-type`` keyed by the kernel
release and the QEMU version, so worker restarts do not pay for the probe (~1-3 s).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

LOG = logging.getLogger(__name__)
# mov dx,0x3f8; mov al,'K'; out dx,al; mov al,10; out dx,al; hlt; jmp $-1
_BOOT = bytes([0xBA, 0xF8, 0x03, 0xB0, 0x4B, 0xEE, 0xB0, 0x0A, 0xEE, 0xF4, 0xEB, 0xFD])
BOOT_SECTOR = _BOOT + b"\0" * (510 - len(_BOOT)) + b"\x55\xaa"


def _supported(conn) -> set[str]:
    caps = ET.fromstring(conn.getCapabilities())
    return {d.get("type") for g in caps.iterfind("./guest") if g.findtext("os_type") == "hvm"
            for d in g.iterfind("./arch/domain")}


def _boot_time(conn, virt_type: str, workdir: Path, timeout: float) -> float | None:
    """Seconds from createXML to the boot sector's byte on the serial log, or None."""
    disk, log = workdir / f"boot-{virt_type}.img", workdir / f"serial-{virt_type}.log"
    disk.write_bytes(BOOT_SECTOR)
    os.chmod(disk, 0o644)
    name = f"stratus-virt-probe-{virt_type}-{uuid.uuid4().hex[:8]}"
    xml = f"""<domain type='{virt_type}'>
  <name>{name}</name><memory unit='MiB'>16</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>
      <target dev='hda' bus='ide'/></disk>
    <serial type='file'><source path='{log}'/></serial>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices></domain>"""
    start = time.monotonic()
    try:
        dom = conn.createXML(xml, 0)
    except libvirt.libvirtError as exc:
        LOG.info("virt type %s: domain does not start: %s", virt_type, exc.get_error_message())
        return None
    try:
        while time.monotonic() - start < timeout:
            try:
                if b"K" in log.read_bytes():
                    return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.02)
        return None
    finally:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass


def detect_virt_type(conn, instances_dir: Path) -> str:
    key = {"kernel": os.uname().release, "qemu": conn.getVersion(), "libvirt": conn.getLibVersion()}
    cache = Path(instances_dir) / ".virt-type"
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key and saved.get("virt_type") in ("kvm", "qemu"):
            return saved["virt_type"]
    except (OSError, ValueError):
        pass
    types = _supported(conn)
    result = "qemu"
    if "kvm" in types and os.path.exists("/dev/kvm"):
        Path(instances_dir).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".virt-probe-", dir=instances_dir))
        try:
            os.chmod(work, 0o755)
            tcg = _boot_time(conn, "qemu", work, 10.0)
            kvm = _boot_time(conn, "kvm", work, (tcg or 5.0) * 1.5 + 0.5)
            LOG.info("virt type probe: qemu (TCG) %s s, kvm %s s", tcg, kvm)
            if kvm is not None and (tcg is None or kvm <= tcg):
                result = "kvm"
        finally:
            shutil.rmtree(work, ignore_errors=True)
    try:
        cache.write_text(json.dumps({"key": key, "virt_type": result}))
    except OSError:
        pass
    return result
