"""Stratus API: Compute v2.1, Identity v3, Image v2, Placement and Networking v2.0 subsets in one Flask application.

``create_app`` is the only importer of the views modules (the modules that define a blueprint); importing
anything else of ``app`` loads no view, and the Flask-free modules load no Flask.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from flask import Flask
    from flask_migrate import Migrate
    from flask_sqlalchemy import SQLAlchemy

    from app import allow, auth, cli, errors, microversion, openapi, policy, request_limits, response_log, versions
    from app.compute import (aggregates, availability_zones, consoles, extensions, flavor_access, flavors, hosts,
                             hypervisors, images,
                             instance_actions, keypairs, limits, migrations, networks, quotas, server_diagnostics,
                             security_groups, server_groups, server_password, server_metadata, server_tags, servers,
                             services, usage,
                             usage_audit_log, volume_attachments)
    from app.identity import (application_credentials, catalog, domains, groups, projects, roles, system,
                              tokens, users)
    from app.identity import versions as identity_versions
    from app.image import actions as image_actions
    from app.image import imports as image_imports
    from app.image import members as image_members
    from app.image import metadefs as image_metadefs
    from app.image import views as image
    from app.network import networks as network_networks
    from app.network import ports as network_ports
    from app.network import quotas as network_quotas
    from app.network import root as network_root
    from app.network import subnets as network_subnets
    from app.placement import aggregates as placement_aggregates
    from app.placement import allocation_candidates, allocations, inventories, providers, resource_classes
    from app.placement import microversion as placement_microversion
    from app.placement import root as placement_root
    from app.placement import traits as placement_traits
    from app.placement import usages as placement_usages
    from app.json_provider import OrjsonProvider
    from core.models import Base
    from core.settings import get_settings
    from tasks.messaging import rpc

    settings = get_settings()
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.sqlalchemy_url,
        MAX_CONTENT_LENGTH=None,  # bodies are limited per route (image uploads stream)
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.json = OrjsonProvider(app)  # keys unsorted, as Nova's bodies
    response_log.init_app(app)  # first registered, so it records the final response; inert unless tests set it
    logging.basicConfig(level=settings.log_level)
    settings.state_path.mkdir(parents=True, exist_ok=True)

    # Flask-SQLAlchemy is here for Flask-Migrate (`flask db upgrade`); services use core.db sessions.
    migrate_db = SQLAlchemy(metadata=Base.metadata)
    migrate_db.init_app(app)
    Migrate(app, migrate_db, directory=str(_repo_path("migrations")), render_as_batch=True)

    errors.register_error_handlers(app)
    allow.init_app(app)
    request_limits.init_app(app)  # before auth: size/shape checks answer first, as Nova's sizelimit does
    auth.init_app(app)
    microversion.init_app(app)
    placement_microversion.init_app(app)
    policy.init_app(app)
    app.register_blueprint(versions.bp)
    for module in (identity_versions, tokens, domains, projects, users, roles, groups, catalog,
                   application_credentials, system):
        app.register_blueprint(module.bp, url_prefix="/identity")
    for module in (image, image_members, image_actions, image_imports, image_metadefs):
        app.register_blueprint(module.bp, url_prefix="/image")
    for module in (placement_root, providers, inventories, placement_usages, allocations, allocation_candidates,
                   resource_classes, placement_traits, placement_aggregates):
        app.register_blueprint(module.bp, url_prefix="/placement")
    for module in (network_root, network_networks, network_subnets, network_ports, network_quotas):
        app.register_blueprint(module.bp, url_prefix="/networking")
    for module in (servers, flavors, keypairs, limits, availability_zones, networks, services, hypervisors,
                   instance_actions, quotas, server_groups, aggregates, flavor_access, usage, migrations, consoles,
                   server_diagnostics, server_metadata, server_tags, server_password, security_groups,
                   usage_audit_log, hosts, extensions, images, volume_attachments):
        app.register_blueprint(module.bp, url_prefix="/v2.1")
    openapi.init_app(app)
    cli.init_app(app)
    rpc.configure_client()
    return app


def _repo_path(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name)
