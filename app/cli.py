"""`flask --app app stratus ...` admin commands."""
from __future__ import annotations

import os
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from app.identity import service
from app.policy import sample_file
from core.db import write_session
from core.models import Flavor
from core.settings import get_settings
from core.writes.resources import orphaned_allocations, release_allocation

stratus = AppGroup("stratus", help="Stratus administration.")

# DevStack's flavors: (flavorid, name, ram MB, disk GB, vcpus)
DEFAULT_FLAVORS = [("42", "m1.nano", 128, 1, 1), ("84", "m1.micro", 192, 1, 1), ("1", "m1.tiny", 512, 1, 1),
                   ("2", "m1.small", 2048, 20, 1), ("3", "m1.medium", 4096, 40, 2), ("4", "m1.large", 8192, 80, 4),
                   ("5", "m1.xlarge", 16384, 160, 8)]


def bootstrap(admin_password: str) -> dict:
    """Create the default roles, the admin project and user (admin on the project and on the system), the service
    project, the service catalog, and the default flavors. Idempotent."""
    with write_session() as s:
        user = service.bootstrap(s, admin_password)
        project = service.ensure_project(s, "admin")
        for name in ("member", "reader"):  # implied by admin; granted too, as Stratus always did
            service.grant(s, user.id, project.id, service.ensure_role(s, name).id)
        ensure_compute_user(s)
        existing = set(s.scalars(select(Flavor.flavorid)))
        for flavorid, name, ram, disk, vcpus in DEFAULT_FLAVORS:
            if flavorid not in existing:
                s.add(Flavor(flavorid=flavorid, name=name, memory_mb=ram, root_gb=disk, vcpus=vcpus))
    return {"project_id": project.id, "user_id": user.id}


def ensure_compute_user(s) -> None:
    """The compute hosts' own credential for the Image API (issue 25), when STRATUS_SERVICE_PASSWORD is set: user
    ``service_user`` with the ``service`` role in project ``service_project`` (as DevStack's nova/glance users)."""
    cfg = get_settings()
    if not cfg.service_password:
        return
    project = service.ensure_project(s, cfg.service_project)
    user = service.ensure_user(s, cfg.service_user, cfg.service_password, default_project_id=project.id)
    service.grant(s, user.id, project.id, service.ensure_role(s, "service").id)


def write_client_files(admin_password: str) -> Path:
    """An openrc and a clouds.yaml for the admin user, next to the state."""
    cfg = get_settings()
    auth_url = f"{cfg.public_url.rstrip('/')}/identity/v3"
    openrc = cfg.state_path / "openrc"
    openrc.write_text(
        f"export OS_AUTH_URL={auth_url}\nexport OS_IDENTITY_API_VERSION=3\nexport OS_USERNAME=admin\n"
        f"export OS_PASSWORD={admin_password}\nexport OS_PROJECT_NAME=admin\n"
        "export OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n"
        "export OS_REGION_NAME=RegionOne\n")
    os.chmod(openrc, 0o600)
    clouds = cfg.state_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  stratus:\n    auth:\n"
        f"      auth_url: {auth_url}\n      username: admin\n      password: {admin_password}\n"
        "      project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n"
        "    region_name: RegionOne\n    identity_api_version: 3\n"
        # the same admin with a system-scoped token (Keystone's admin APIs; Nova and Glance refuse it)
        "  stratus-system:\n    auth:\n"
        f"      auth_url: {auth_url}\n      username: admin\n      password: {admin_password}\n"
        "      user_domain_name: Default\n      system_scope: all\n"
        "    region_name: RegionOne\n    identity_api_version: 3\n")
    os.chmod(clouds, 0o600)
    return openrc


@stratus.command("bootstrap")
@click.option("--admin-password", envvar="STRATUS_ADMIN_PASSWORD", default="stratus",
              help="Password of the admin user (env STRATUS_ADMIN_PASSWORD).")
def bootstrap_command(admin_password: str) -> None:
    """Create the admin user and project, the default roles, the service catalog, and default flavors."""
    ids = bootstrap(admin_password)
    openrc = write_client_files(admin_password)
    click.echo(f"admin project {ids['project_id']}, admin user {ids['user_id']}; credentials in {openrc}")


@stratus.command("audit")
@click.option("--delete", "delete", is_flag=True, help="Remove the orphaned allocations (give the resources back).")
def audit_command(delete: bool) -> None:
    """List allocations without a live instance (like nova-manage placement audit); --delete heals them."""
    with write_session() as s:
        orphans = orphaned_allocations(s)
        for a in orphans:
            click.echo(f"{a['instance_uuid']}  host={a['host']}  vcpus={a['vcpus']}  memory_mb={a['memory_mb']}  "
                       f"disk_gb={a['disk_gb']}  instance={a['instance']}")
            if delete:
                release_allocation(s, a["instance_uuid"])
    verb = "deleted" if delete else "found"
    click.echo(f"{len(orphans)} orphaned allocation(s) {verb}"
               + ("" if delete or not orphans else "; run with --delete to remove them"))
    if orphans:  # nova-manage placement audit's exit codes: 3 found, 4 found and deleted, 0 none
        raise SystemExit(4 if delete else 3)


@stratus.command("policy-dump")
def policy_dump_command() -> None:
    """Print every policy rule with its default check string, as a YAML policy file."""
    click.echo(sample_file(), nl=False)


def init_app(app: Flask) -> None:
    app.cli.add_command(stratus)
