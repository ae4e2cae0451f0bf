"""Remote consoles: ``POST /servers/{id}/remote-consoles`` (2.6+) makes a console URL (app/compute/console_urls.py,
which also serves the legacy ``os-getVNCConsole`` / ``os-getSPICEConsole`` / ``os-getSerialConsole`` actions), and
``GET /os-console-auth-tokens/{token}`` shows what a live token connects to.
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from app.compute.console_urls import create_console
from app.compute.body_schemas import RemoteConsoleSchema
from app.compute.request_body import body_schema, json_body
from app.microversion import current as api_version
from app.policy import enforce
from core.crypto import token_hash
from core.db import read_session
from core.errors import ApiError, bad_request
from core.models import ConsoleAuthToken

bp = Blueprint("consoles", __name__)


@bp.post("/servers/<server_id>/remote-consoles")
@enforce("project_member_api")
@body_schema(RemoteConsoleSchema, root="remote_console", since="2.6")
def remote_consoles(_loaded: dict, server_id: str) -> Response:
    if not api_version().matches("2.6"):
        raise ApiError(404, "The resource could not be found.")
    body = json_body()
    rc = body.get("remote_console") if isinstance(body, dict) else None
    if not isinstance(rc, dict) or set(body) != {"remote_console"}:
        raise bad_request("Invalid input for field/attribute remote_console. 'remote_console' is a required "
                          "property")
    extra = set(rc) - {"protocol", "type"}
    if extra:
        raise bad_request(f"Additional properties are not allowed ({', '.join(repr(e) for e in sorted(extra))} "
                          f"{'was' if len(extra) == 1 else 'were'} unexpected)")
    for key in ("protocol", "type"):
        if key not in rc:
            raise bad_request(f"Invalid input for field/attribute remote_console. '{key}' is a required property")
    url = create_console(server_id, rc["protocol"], rc["type"])
    return jsonify({"remote_console": {"protocol": rc["protocol"], "type": rc["type"], "url": url}})


@bp.get("/os-console-auth-tokens/<token>")
@enforce("admin_api", name="os_compute_api:os-console-auth-tokens",
         description="Show console connection information for a given console authentication token")
def console_auth_token(token: str) -> Response:
    """What the proxy would connect to for a live (unexpired, unused) token. Before 2.31 Nova showed only RDP
    tokens, which Stratus never issues: 401 there, as Nova answers for other console types."""
    with read_session() as s:
        row = s.scalars(select(ConsoleAuthToken).where(ConsoleAuthToken.token_hash == token_hash(token),
                                                       ConsoleAuthToken.expires > int(time.time()),
                                                       ConsoleAuthToken.used_at.is_(None))).first()
    if row is None:
        raise ApiError(404, "Token not found")
    if not api_version().matches("2.31") and row.console_type != "rdp-html5":
        raise ApiError(401, "The requested console type details are not accessible")
    return jsonify({"console": {"instance_uuid": row.instance_uuid, "host": row.host, "port": row.port,
                                "internal_access_path": row.internal_access_path}})
