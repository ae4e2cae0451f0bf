"""One boot that downloads its image over the Image API into the compute host's cache, then boots of the same
image served from the cache (issue 25, images over HTTP): create -> ACTIVE seconds, and the download's bytes
and seconds as the compute logged them. Prints one JSON object.

    python -m bench.image_cache [--mib 64] [--cached 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import requests

from harness.stack import BACKENDS, Stack


def boot_seconds(stack: Stack, headers: dict, image_id: str, name: str) -> float:
    started = time.monotonic()
    r = requests.post(f"{stack.url}/v2.1/servers", headers=headers, timeout=30, json={
        "server": {"name": name, "imageRef": image_id, "flavorRef": "42", "networks": "none"}})
    r.raise_for_status()
    server_id = r.json()["server"]["id"]
    while True:
        status = requests.get(f"{stack.url}/v2.1/servers/{server_id}", headers=headers, timeout=30).json()["server"][
            "status"]
        if status in ("ACTIVE", "ERROR"):
            assert status == "ACTIVE", status
            return time.monotonic() - started
        time.sleep(0.02)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--cached", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), BACKENDS["sqlite-filesystem"], compute_hosts="fake-1").start()
        try:
            headers = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.37"}
            img = requests.post(f"{stack.url}/image/v2/images", headers=headers, timeout=30, json={
                "name": "bench", "disk_format": "raw", "container_format": "bare"}).json()
            data = os.urandom(args.mib << 20)
            requests.put(f"{stack.url}/image/v2/images/{img['id']}/file", data=data, timeout=300,
                         headers={**headers, "Content-Type": "application/octet-stream"}).raise_for_status()
            first = boot_seconds(stack, headers, img["id"], "first")
            cached = [boot_seconds(stack, headers, img["id"], f"cached-{i}") for i in range(args.cached)]
            m = re.search(rf"image {img['id']} downloaded: (\d+) bytes in ([\d.]+) s", stack.log("compute"))
            print(json.dumps({"image_mib": args.mib, "first_boot_s": round(first, 3),
                              "cached_boot_s": [round(c, 3) for c in cached],
                              "download_bytes": int(m.group(1)) if m else None,
                              "download_s": float(m.group(2)) if m else None,
                              "downloads_logged": stack.log("compute").count(f"image {img['id']} downloaded")}))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
