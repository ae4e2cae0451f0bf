"""Image sharing, tags, deactivation and interoperable import with the unmodified clients (the openstack CLI and
python-glanceclient's ``glance``), on every backend: project A shares an image with project B, B accepts it and
boots from it, A removes B, and B can no longer boot new servers from it while its running server keeps running."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import requests

from harness.stack import VENV_BIN, Stack

pytestmark = pytest.mark.services

PW = "image-pw-123"
A = dict(user="img-alice", password=PW, project="img-a")
B = dict(user="img-bob", password=PW, project="img-b")


def _make_users(stack: Stack) -> dict[str, str]:
    ids = {}
    for who in (A, B):
        ids[who["project"]] = stack.openstack_json("project", "create", who["project"])["id"]
        stack.openstack("user", "create", "--password", PW, "--project", who["project"], who["user"])
        stack.openstack("role", "add", "--project", who["project"], "--user", who["user"], "member")
    return ids


def glance(stack: Stack, *args: str, who: dict, data: Path | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    """python-glanceclient's own CLI as ``who``, ``data`` on its standard input (else stdin is closed: glance reads
    any open non-terminal stdin as image data)."""
    with open(data, "rb") if data else contextlib.nullcontext() as stdin:
        proc = subprocess.run([str(VENV_BIN / "glance"), *args], env=stack.os_env(**who), capture_output=True,
                              stdin=stdin, text=True, timeout=120,
                              preexec_fn=None if data else (lambda: os.close(0)))
    if check:
        assert proc.returncode == 0, f"glance {args} failed:\n{proc.stderr}\n{proc.stdout}"
    return proc


def _boot(stack: Stack, image: str, name: str, who: dict, check: bool = True) -> subprocess.CompletedProcess:
    return stack.openstack("server", "create", "--image", image, "--flavor", "m1.nano",
                           name, check=check, **who)


def _flavor_id(stack: Stack) -> str:
    return next(f["ID"] for f in stack.openstack_json("flavor", "list") if f["Name"] == "m1.nano")


@pytest.fixture(scope="module")
def projects(stack):
    return _make_users(stack)


def test_share_accept_boot_remove(stack, projects, tmp_path):
    data = tmp_path / "disk.img"
    data.write_bytes(b"\x00" * 4096 + b"shared image")
    # A imports an image (stage, then glance-direct) and tags it.
    stack.openstack("image", "create", "--import", "--file", str(data), "--disk-format", "raw",
                    "--container-format", "bare", "shared-img", **A)
    image = stack.openstack_json("image", "show", "shared-img", **A)
    assert image["status"] == "active" and image["visibility"] == "shared" and image["size"] == 4096 + 12
    assert image["properties"]["os_glance_importing_to_stores"] == ""
    image_id = image["id"]
    stack.openstack("image", "set", "--tag", "gold", "--tag", "shared", "shared-img", **A)
    assert [i["Name"] for i in stack.openstack_json("image", "list", "--tag", "gold", **A)] == ["shared-img"]
    assert stack.openstack_json("image", "list", "--tag", "nope", **A) == []

    # A shares it with B: pending, so not in B's list, and B sees its own membership.
    added = stack.openstack_json("image", "add", "project", image_id, projects["img-b"], **A)
    assert added["status"] == "pending" and added["member_id"] == projects["img-b"]
    members = stack.openstack_json("image", "member", "list", "shared-img", **A)
    assert [(m["Member ID"], m["Status"]) for m in members] == [(projects["img-b"], "pending")]
    assert "shared-img" not in {i["Name"] for i in stack.openstack_json("image", "list", **B)}

    # B accepts it: in B's list, bootable there.
    stack.openstack("image", "set", "--accept", image_id, **B)
    assert "shared-img" in {i["Name"] for i in stack.openstack_json("image", "list", **B)}
    members = stack.openstack_json("image", "member", "list", image_id, **B)
    assert [(m["Member ID"], m["Status"]) for m in members] == [(projects["img-b"], "accepted")]
    _boot(stack, image_id, "b-shared-vm", B)
    vm = stack.wait_server("b-shared-vm", "ACTIVE")
    assert vm["image"]["id"] == image_id

    # A removes B: B can no longer boot from it, its server keeps running.
    stack.openstack("image", "remove", "project", image_id, projects["img-b"], **A)
    assert stack.openstack_json("image", "member", "list", "shared-img", **A) == []
    refused = _boot(stack, image_id, "b-shared-vm-2", B, check=False)
    assert refused.returncode != 0 and f"No Image found for {image_id}" in refused.stderr, refused.stderr
    # The CLI asks the Image API first; the Compute API refuses too, with Nova's error.
    resp = requests.post(f"{stack.url}/v2.1/servers", headers={
        "X-Auth-Token": stack.token(B["user"], PW, B["project"]), "OpenStack-API-Version": "compute 2.96"},
        json={"server": {"name": "b-shared-vm-3", "imageRef": image_id, "flavorRef": _flavor_id(stack),
                         "networks": "none"}})
    assert resp.status_code == 400 and resp.json()["badRequest"]["message"] == "Can not find requested image", \
        resp.text
    assert stack.openstack("image", "show", image_id, check=False, **B).returncode != 0
    assert stack.openstack_json("server", "show", "b-shared-vm", **B)["status"] == "ACTIVE"
    stack.openstack("server", "delete", "b-shared-vm", **B)
    stack.wait_server(vm["id"], "DELETED")


def test_deactivate_and_activate(stack, projects):
    token_headers = {"X-Auth-Token": stack.admin_token()}
    img = requests.post(f"{stack.url}/image/v2/images", headers=token_headers, json={
        "name": "deact-img", "disk_format": "raw", "container_format": "bare", "visibility": "public"}).json()
    requests.put(f"{stack.url}/image/v2/images/{img['id']}/file", data=b"d" * 2048,
                 headers={**token_headers, "Content-Type": "application/octet-stream"}).raise_for_status()
    stack.openstack("image", "set", "--deactivate", "deact-img")
    assert stack.openstack_json("image", "show", "deact-img", **A)["status"] == "deactivated"
    refused = _boot(stack, img["id"], "deact-vm", A, check=False)
    assert refused.returncode != 0 and f"Image {img['id']} is not active." in refused.stderr, refused.stderr
    # openstacksdk reads the 403's body as the data (its checksum then fails): the CLI fails either way.
    assert stack.openstack("image", "save", "--file", "/dev/null", "deact-img", check=False, **A).returncode != 0
    resp = requests.get(f"{stack.url}/image/v2/images/{img['id']}/file",
                        headers={"X-Auth-Token": stack.token(A["user"], PW, A["project"]), "Accept": "application/json"})
    assert resp.status_code == 403 and "deactivated" in resp.json()["message"], resp.text  # webob's JSON error
    stack.openstack("image", "set", "--activate", "deact-img")
    assert stack.openstack_json("image", "show", "deact-img", **A)["status"] == "active"
    _boot(stack, img["id"], "react-vm", A)
    vm = stack.wait_server("react-vm", "ACTIVE")
    stack.openstack("server", "delete", "react-vm", **A)
    stack.wait_server(vm["id"], "DELETED")


def test_glanceclient(stack, projects, tmp_path):
    data = tmp_path / "g.img"
    data.write_bytes(b"glance client image" * 100)
    info = "".join(glance(stack, "import-info", who=A).stdout.split()).replace("|", "")  # the table wraps
    assert '"value":["glance-direct","web-download"]' in info, info
    created = glance(stack, "image-create-via-import", "--name", "g-img", "--disk-format", "raw",
                     "--container-format", "bare", who=A, data=data).stdout
    image_id = next(line.split("|")[2].strip() for line in created.splitlines() if line.startswith("| id "))
    assert "active" in glance(stack, "image-show", image_id, who=A).stdout
    glance(stack, "image-tag-update", image_id, "silver", who=A)
    assert "silver" in glance(stack, "image-show", image_id, who=A).stdout
    glance(stack, "image-tag-delete", image_id, "silver", who=A)
    assert "silver" not in glance(stack, "image-show", image_id, who=A).stdout
    glance(stack, "member-create", image_id, projects["img-b"], who=A)
    glance(stack, "member-update", image_id, projects["img-b"], "rejected", who=B)
    listed = glance(stack, "member-list", "--image-id", image_id, who=A).stdout
    assert projects["img-b"] in listed and "rejected" in listed
    glance(stack, "member-delete", image_id, projects["img-b"], who=A)
    # web-download is off unless an operator allows hosts: Glance's filtering error.
    queued = glance(stack, "image-create", "--name", "web", "--disk-format", "raw", "--container-format", "bare",
                    who=A).stdout
    web_id = next(line.split("|")[2].strip() for line in queued.splitlines() if line.startswith("| id "))
    refused = glance(stack, "image-import", web_id, "--import-method", "web-download", "--uri",
                     "http://169.254.169.254/latest", who=A, check=False)
    filtered = "URI for web-download does not pass filtering: http://169.254.169.254/latest"
    assert refused.returncode != 0 and filtered in refused.stderr + refused.stdout, refused.stderr
    resp = requests.post(f"{stack.url}/image/v2/images/{web_id}/import",
                         headers={"X-Auth-Token": stack.token(A["user"], PW, A["project"]), "Accept": "application/json"},
                         json={"method": {"name": "web-download", "uri": "http://169.254.169.254/latest"}})
    assert resp.status_code == 400 and resp.json()["message"].startswith(filtered), resp.text  # webob's JSON error
    assert "queued" in glance(stack, "image-show", web_id, who=A).stdout
    glance(stack, "image-deactivate", image_id, who=A)
    assert "deactivated" in glance(stack, "image-show", image_id, who=A).stdout
    glance(stack, "image-reactivate", image_id, who=A)
    assert glance(stack, "md-namespace-list", who=A).returncode == 0
    assert "| success |" in glance(stack, "image-tasks", image_id, who=A).stdout
