"""Stratus metadata service (port 8775): what a guest reads at http://169.254.169.254.

Run by the Procfile's ``metadata`` line (gunicorn 'metadata:create_app()'). The instance is identified by the
request's source address among live instances' fixed IPs, or -- when ``metadata_proxy_shared_secret`` is set -- by
Nova's X-Instance-ID / X-Tenant-ID / X-Instance-ID-Signature headers from a proxy in front, or by the guest's
address relayed by a compute host's proxy (``metadata/proxy.py``: X-Forwarded-For, X-Stratus-Host and its
signature with that host's key), which must then be the address of an instance on that host. Any identity header
that does not carry a valid signature is refused (403); an address that is no live instance's gets 404.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from core.settings import get_settings

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from flask import Flask  # here, so the per-host proxy (metadata.proxy) loads no Flask

    from metadata import api  # the app factory registers the views (Flask's application factory pattern)

    settings = get_settings()
    app = Flask(__name__)
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(level=settings.log_level)
    app.register_blueprint(api.bp)
    return app
