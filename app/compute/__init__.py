"""Compute API v2.1: one blueprint per resource, mounted at /v2.1."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from app.compute import (admin, aggregates, flavor_access, flavors, instance_actions, keypairs, migrations, misc,
                             networks, servers, usage)

    for bp in (servers.bp, flavors.bp, keypairs.bp, misc.bp, networks.bp, admin.bp, instance_actions.bp,
               aggregates.bp, flavor_access.bp, usage.bp, migrations.bp):
        app.register_blueprint(bp, url_prefix="/v2.1")
    from app.compute import consoles  # also registers the os-get*Console server actions
    app.register_blueprint(consoles.bp, url_prefix="/v2.1")
