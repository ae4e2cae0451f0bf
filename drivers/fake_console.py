"""The fake guest's serial console: what a small cloud image prints on ttyS0, from the instance's own facts.

A guest's log is a list of ``[seconds since spawn, line]`` entries. ``boot_log`` writes the whole boot at spawn
(deterministic: the same instance gives the same lines; the kernel's part and the driver's record of what it
built are there at once, the rest of the boot appears over the next ``BOOT_SECONDS``), ``render`` shows what the guest has printed by a moment: the boot lines
due by then, the driver's event lines (power off, reboot, ...), and after the boot an idle guest's periodic
lines, one every ``IDLE_LINE_SECONDS``, at most ``MAX_IDLE_LINES``. Like Nova's libvirt driver, the answer is at
most the last ``MAX_CONSOLE_BYTES`` of the log.
"""
from __future__ import annotations

import hashlib
import time

from drivers.base import InstanceSpec

BOOT_SECONDS = 8.0
IDLE_LINE_SECONDS = 5.0
MAX_IDLE_LINES = 2000
MAX_CONSOLE_BYTES = 100 * 1024  # nova/virt/libvirt/driver.py MAX_CONSOLE_BYTES

Entry = list  # [offset seconds, line]

_IDLE = ("systemd[1]: Starting sysstat-collect.service - system activity accounting tool...",
         "systemd[1]: sysstat-collect.service: Deactivated successfully.",
         "systemd[1]: Finished sysstat-collect.service - system activity accounting tool.",
         "chronyd[498]: Selected source 169.254.169.123 (metadata)",
         "systemd[1]: Starting apt-daily.service - Daily apt download activities...",
         "systemd[1]: apt-daily.service: Deactivated successfully.")


def _kernel(stamp: float, text: str) -> Entry:
    """A kernel line: printed with its time stamp, due at once (a kernel prints all this in a blink)."""
    return [0.0, f"[{stamp:12.6f}] {text}"]


def boot_log(instance: InstanceSpec, started: float) -> list[Entry]:
    """Every line of the guest's boot, each at the moment it is printed."""
    seed = hashlib.sha256(instance.uuid.encode()).digest()
    jitter = [b / 2550 for b in seed]  # up to 0.1 s, the same for the same instance
    net = instance.network
    mem_kb = instance.memory_mb * 1024
    sectors = instance.root_gb * 2 * 1024 * 1024
    cmdline = "BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200n8"
    if net and net.get("address"):  # a spec may carry only part of the network (the address, the MAC)
        cmdline += f" stratus.ip={net['address']}/{net.get('prefixlen', 24)}"
        cmdline += f" stratus.gw={net['gateway']}" if net.get("gateway") else ""
        cmdline += f" stratus.mac={net['mac']}" if net.get("mac") else ""
    kernel = [
        "Linux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0)"
        " #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1",
        f"Command line: {cmdline}",
        "BIOS-provided physical RAM map:",
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        f"BIOS-e820: [mem 0x0000000000100000-0x{instance.memory_mb * 1024 * 1024 - 1:016x}] usable",
        "NX (Execute Disable) protection: active",
        "SMBIOS 2.8 present.",
        "DMI: OpenStack Foundation OpenStack Nova, BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
        "Hypervisor detected: KVM",
        f"smpboot: Allowing {instance.vcpus} CPUs, 0 hotplug CPUs",
        f"Kernel command line: {cmdline}",
        f"Memory: {mem_kb - 65536}K/{mem_kb}K available",
        "Console: colour dummy device 80x25",
        "printk: console [ttyS0] enabled",
        "smp: Bringing up secondary CPUs ...",
        f"smp: Brought up 1 node, {instance.vcpus} CPUs",
        "PCI: Using configuration type 1 for base access",
        "clocksource: Switched to clocksource kvm-clock",
        f"virtio_blk virtio1: [vda] {sectors} 512-byte logical blocks ({instance.root_gb} GiB)",
        " vda: vda1 vda14 vda15",
    ]
    if instance.config_drive_files is not None:
        kernel.append("sr 0:0:0:0: [sr0] scsi3-mmc drive: 4x/4x cd/rw xa/form2 tray")
    if net:
        kernel.append("virtio_net virtio0 ens3: renamed from eth0")
    kernel += ["EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.",
               "Run /sbin/init as init process",
               "systemd[1]: systemd 252.31-1~deb12u1 running in system mode",
               f"systemd[1]: Hostname set to <{instance.hostname}>."]
    log = [_kernel(round(0.9 * i / len(kernel) + jitter[i % 32] / 10, 6), text) for i, text in enumerate(kernel)]
    # The driver's own record of what it built, printed once the guest is up (tests and operators read these).
    log.append([0.0, f"fake guest {instance.uuid} booted as {instance.hostname}"])
    if net:
        log.append([0.0, f"fake guest nic mac={net['mac']} ip={net['address']} bridge={net['bridge']}"])
    if instance.config_drive_files is not None:
        log.append([0.0, "fake config drive config-2: " + " ".join(sorted(instance.config_drive_files))])
    clock = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(started + 3))
    source = "DataSourceConfigDrive [net,ver=2][source=/dev/sr0]" if instance.config_drive_files is not None \
        else "DataSourceOpenStackLocal [net,ver=2]"
    userspace = [
        "[  OK  ] Started systemd-journald.service - Journal Service.",
        "[  OK  ] Finished systemd-fsck-root.service - File System Check on Root Device.",
        "[  OK  ] Reached target local-fs.target - Local File Systems.",
        "[  OK  ] Started systemd-udevd.service - Rule-based Manager for Device Events and Files.",
        "         Starting cloud-init-local.service - Initial cloud-init job (pre-networking)...",
        f"cloud-init[301]: Cloud-init v. 22.4.2 running 'init-local' at {clock}. Up 3.01 seconds.",
        "[  OK  ] Finished cloud-init-local.service - Initial cloud-init job (pre-networking).",
        "[  OK  ] Reached target network-pre.target - Preparation for Network.",
        "         Starting networking.service - Raise network interfaces...",
        "[  OK  ] Finished networking.service - Raise network interfaces.",
        f"cloud-init[402]: Cloud-init v. 22.4.2 running 'init' at {clock}. Up 4.12 seconds.",
        "cloud-init[402]: ci-info: ++++++++++++++++++++++++Net device info+++++++++++++++++++++++++",
        "cloud-init[402]: ci-info: | Device |  Up  |    Address    |    Mask   |     Hw-Address    |",
    ]
    if net:
        mask = net.get("netmask", "255.255.255.0")
        userspace.append(f"cloud-init[402]: ci-info: |  ens3  | True | {net['address']} | {mask} | {net['mac']} |")
    userspace += [
        "cloud-init[402]: ci-info: |   lo   | True |   127.0.0.1   | 255.0.0.0 |         .         |",
        "cloud-init[402]: ci-info: +--------+------+---------------+-----------+-------------------+",
        "[  OK  ] Started ssh.service - OpenBSD Secure Shell server.",
        "[  OK  ] Reached target multi-user.target - Multi-User System.",
        f"cloud-init[520]: Cloud-init v. 22.4.2 finished at {clock}. Datasource "
        f"{source}."
        f" Up {BOOT_SECONDS - 0.5:.2f} seconds",
        "",
        f"Debian GNU/Linux 12 {instance.hostname} ttyS0",
        "",
        f"{instance.hostname} login: ",
    ]
    span = BOOT_SECONDS - 2.0
    log += [[round(2.0 + span * i / len(userspace), 6), text] for i, text in enumerate(userspace)]
    return log


def render(boot: list[Entry], events: list, elapsed: float) -> str:
    """The console as it reads ``elapsed`` seconds after spawn."""
    idle = min(MAX_IDLE_LINES, max(0, int((elapsed - BOOT_SECONDS) // IDLE_LINE_SECONDS) + 1)) \
        if elapsed >= BOOT_SECONDS else 0
    due: list[tuple[float, int, str]] = [(offset, 0, line) for offset, line in boot if offset <= elapsed]
    for n in range(idle):
        offset = BOOT_SECONDS + n * IDLE_LINE_SECONDS
        due.append((offset, 0, f"[{offset:12.6f}] {_IDLE[n % len(_IDLE)]}"))
    for event in events:  # a plain string is a line recorded before the log had times: it came with the boot
        offset, line = (event[0], event[1]) if isinstance(event, list) else (0.0, event)
        due.append((offset, 1, line))
    due.sort(key=lambda entry: (entry[0], entry[1]))
    text = "".join(line + "\n" for _, _, line in due)
    if len(text) > MAX_CONSOLE_BYTES:
        text = text[-MAX_CONSOLE_BYTES:]
        text = text[text.find("\n") + 1:]  # whole lines only
    return text
