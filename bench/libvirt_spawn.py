"""Benchmark: LibvirtDriver.spawn() versus `virsh start` of the same domain XML.

For each repetition, two fresh overlays of the test image are built (untimed). One guest is started through
``driver.spawn()`` (timed from the call to the domain running: lookup, XML generation, define, start); the other
is the same XML under another name/UUID, defined beforehand (untimed) and started with ``virsh start`` (timed from
the command's start to its exit, when the domain runs). Each guest is destroyed before the other starts, and the
order alternates between repetitions. Prints one JSON line. Target (docs/design.md): spawn ≤ 10 % over virsh start.

    .venv/bin/python bench/libvirt_spawn.py [-n 5]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.settings import Settings  # noqa: E402
from drivers import load_driver  # noqa: E402
from drivers.base import ImageSpec, InstanceSpec  # noqa: E402

URI = "qemu:///system"


def _virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, check=check, timeout=120)


def _image(image_dir: Path) -> ImageSpec:
    def part(name: str, fmt: str) -> ImageSpec:
        p = image_dir / name
        md5 = hashlib.md5(p.read_bytes()).hexdigest()  # noqa: S324
        return ImageSpec(id=f"bench-{name.replace('.', '-')}-{md5[:8]}", disk_format=fmt, container_format=fmt,
                         size=p.stat().st_size, checksum=md5, properties={}, path=str(p))
    disk = part("disk.qcow2", "qcow2")
    return ImageSpec(**{**disk.__dict__, "properties": {"os_command_line": (image_dir / "cmdline").read_text().strip()},
                        "kernel": part("vmlinuz", "aki"), "ramdisk": part("initrd.img", "ari")})


def _stats(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 4), "mean": round(statistics.fmean(xs), 4),
            "min": round(min(xs), 4), "max": round(max(xs), 4), "samples": [round(x, 4) for x in xs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--repetitions", type=int, default=5)
    ap.add_argument("--memory-mb", type=int, default=128)
    args = ap.parse_args()

    for tool in ("libvirt-up", "build-test-image"):
        subprocess.run([str(REPO / "tools" / tool)], check=True, capture_output=True, timeout=600)
    image = _image(Path(os.environ.get("STRATUS_TEST_IMAGE_DIR", REPO / ".cache" / "test-image")))
    state = Path(tempfile.mkdtemp(prefix="stratus-bench-libvirt-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    driver = load_driver("libvirt", "bench-host", Settings(state_dir=str(state), compute_driver="libvirt",
                                                           libvirt_uri=URI))
    driver.init_host()
    spawn_times: list[float] = []
    virsh_times: list[float] = []
    made: list[str] = []
    try:
        for i in range(args.repetitions):
            def inst(tag: str) -> InstanceSpec:
                return InstanceSpec(uuid=str(uuid.uuid4()), name=f"bench-{tag}-{i}", hostname=f"bench-{tag}-{i}",
                                    project_id="bench", user_id="bench", vcpus=1, memory_mb=args.memory_mb,
                                    root_gb=1, flavor_name="bench", flavor_id="bench", image=image)
            a, ref = inst("spawn"), inst("virsh")
            made += [a.uuid, ref.uuid]
            driver.build_disk(a)
            driver.build_disk(ref)  # the reference's own overlay, console log and UUID; same XML otherwise
            xml_path = state / f"{ref.uuid}.xml"
            xml_path.write_text(driver.domain_xml(ref))
            _virsh("define", str(xml_path))

            # Each start runs alone: the other guest is stopped first, so neither competes with a booting guest.
            def run_spawn() -> None:
                t = time.perf_counter()
                driver.spawn(a)
                spawn_times.append(time.perf_counter() - t)
                assert _virsh("domstate", a.uuid).stdout.strip() == "running"
                driver.destroy(a.uuid)

            def run_virsh() -> None:
                t = time.perf_counter()
                _virsh("start", ref.uuid)
                virsh_times.append(time.perf_counter() - t)
                assert _virsh("domstate", ref.uuid).stdout.strip() == "running"
                driver.destroy(ref.uuid)

            for step in ((run_spawn, run_virsh) if i % 2 == 0 else (run_virsh, run_spawn)):
                step()
    finally:
        for u in made:
            try:
                driver.destroy(u)
            except Exception:  # noqa: BLE001
                _virsh("destroy", u, check=False)
                _virsh("undefine", u, "--managed-save", check=False)
        shutil.rmtree(state, ignore_errors=True)

    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    spawn_med, virsh_med = statistics.median(spawn_times), statistics.median(virsh_times)
    print(json.dumps({
        "bench": "libvirt_spawn",
        "repetitions": args.repetitions,
        "spawn_s": _stats(spawn_times),
        "virsh_start_s": _stats(virsh_times),
        "overhead_pct_median": round((spawn_med / virsh_med - 1) * 100, 1),
        "overhead_pct_mean": round((statistics.fmean(spawn_times) / statistics.fmean(virsh_times) - 1) * 100, 1),
        "target_overhead_pct": 10,
        "env": {"virt_type": driver.virt_type, "qemu": qemu, "libvirt": driver.conn.getLibVersion(),
                "cpu_count": os.cpu_count(), "memory_mb": args.memory_mb,
                "loadavg_1m": os.getloadavg()[0]},
    }))


if __name__ == "__main__":
    main()
