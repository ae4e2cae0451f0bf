"""The config drive: an ISO 9660 volume labelled ``config-2`` (Nova's format), made with genisoimage on the
hypervisor's host (as nova/virt/configdrive.py) from the files ``core.metadata_docs`` renders.

genisoimage (or xorriso's mkisofs emulation) comes from Debian: ``apt-get install genisoimage`` (or xorriso).
Rock Ridge and Joliet keep the file names as written (meta_data.json, user-data), as Nova's mkisofs call does.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

LABEL = "config-2"


class ConfigDriveError(Exception):
    pass


def _tool() -> list[str]:
    for name in ("genisoimage", "mkisofs"):
        path = shutil.which(name)
        if path:
            return [path]
    xorriso = shutil.which("xorriso")
    if xorriso:
        return [xorriso, "-as", "mkisofs"]
    raise ConfigDriveError("No ISO 9660 tool found: install genisoimage (or xorriso)")


def make_iso(files: dict[str, bytes], target: str | os.PathLike) -> None:
    """Write ``files`` (relative path -> content) as an ISO 9660 image at ``target`` (atomically)."""
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="stratus-configdrive-") as tmp:
        root = Path(tmp) / "root"
        for rel, data in files.items():
            path = (root / rel).resolve()
            if not str(path).startswith(str(root.resolve()) + os.sep):
                raise ConfigDriveError(f"bad config drive path {rel!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        partial = target.with_name(target.name + ".tmp")
        cmd = [*_tool(), "-o", str(partial), "-ldots", "-allow-lowercase", "-allow-multidot", "-l",
               "-publisher", "Stratus", "-quiet", "-J", "-r", "-V", LABEL, str(root)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            partial.unlink(missing_ok=True)
            raise ConfigDriveError(f"{cmd[0]} failed ({run.returncode}): {run.stderr.strip()[-500:]}")
        os.chmod(partial, 0o644)
        os.replace(partial, target)
