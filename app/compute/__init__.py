"""Compute API v2.1: one blueprint per resource, mounted at /v2.1."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from app.compute import (admin, aggregates, flavor_access, flavors, instance_actions, keypairs, migrations, misc,
                             networks, quotas, server_groups, servers, usage)

    for bp in (servers.bp, flavors.bp, keypairs.bp, misc.bp, networks.bp, admin.bp, instance_actions.bp,
               quotas.bp, server_groups.bp, aggregates.bp, flavor_access.bp, usage.bp, migrations.bp):
        app.register_blueprint(bp, url_prefix="/v2.1")
    from app.compute import consoles  # also registers the os-get*Console server actions
    app.register_blueprint(consoles.bp, url_prefix="/v2.1")
    # server_actions and server_moves add their handlers to servers.EXTRA_ACTIONS
    from app.compute import server_actions, server_metadata, server_moves, server_tags  # noqa: F401
    for bp in (server_actions.bp, server_metadata.bp, server_tags.bp):
        app.register_blueprint(bp, url_prefix="/v2.1")
