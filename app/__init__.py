"""Stratus API: Compute v2.1, Identity v3 subset and Image v2 subset in one Flask application."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from flask_migrate import Migrate
    from flask_sqlalchemy import SQLAlchemy

    from app import auth, cli, errors, limits, microversion, openapi, policy, response_log
    from tasks.messaging import rpc
    from app.compute import register as register_compute
    from app.identity import bp as identity_bp
    from app.image import bp as image_bp
    from core.models import Base
    from core.settings import get_settings
    from app.versions import bp as versions_bp
    from app.json_provider import OrjsonProvider

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
    limits.init_app(app)  # before auth: size/shape checks answer first, as Nova's sizelimit does
    auth.init_app(app)
    microversion.init_app(app)
    policy.init_app(app)
    app.register_blueprint(versions_bp)
    app.register_blueprint(identity_bp, url_prefix="/identity")
    app.register_blueprint(image_bp, url_prefix="/image")
    register_compute(app)
    openapi.init_app(app)
    cli.init_app(app)
    rpc.configure_client()
    return app


def _repo_path(name: str) -> str:
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name)
