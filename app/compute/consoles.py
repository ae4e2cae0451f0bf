"""Browser consoles: ``POST /servers/{id}/remote-consoles`` (2.6+) and the legacy ``os-getVNCConsole`` /
``os-getSPICEConsole`` actions.

The API asks the instance's compute host where the guest's VNC/SPICE server listens, makes a random token and
has the conductor store only its SHA-256, bound to the instance, the console type and that host/port, with an
expiry. The URL points at the console proxy (``proxies/``), which lets the token through once.
"""
from __future__ import annotations

import hashlib
import secrets
import time

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from app.compute.schemas import json_body
from app.compute.servers import EXTRA_ACTIONS, get_instance
from app.context import current
from app.microversion import current as api_version
from app.policy import enforce, recheck
from core import states
from core.db import read_session
from core.errors import ApiError, bad_request, conflict
from core.models import ConsoleAuthToken
from core.routing import compute_queue
from core.settings import get_settings
from tasks.messaging import rpc

bp = Blueprint("consoles", __name__)

# console type -> protocol it speaks; protocol -> types Nova knows for it
TYPE_PROTOCOL = {"novnc": "vnc", "spice-html5": "spice"}
KNOWN_PROTOCOLS = {"vnc": ("novnc", "xvpvnc"), "spice": ("spice-html5", "spice-direct"), "rdp": ("rdp-html5",),
                   "serial": ("serial",), "mks": ("webmks",)}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def console_url(console_type: str, token: str) -> str:
    cfg = get_settings()
    if console_type == "novnc":
        # Nova's form: noVNC puts ``path`` after ws://host:port/, so the WebSocket URL carries ?token=.
        return f"{cfg.novncproxy_base_url}?path=%3Ftoken%3D{token}"
    # spice_auto.html keeps ``token`` in a cookie the proxy reads (Nova's form); ``path`` carries it too, so
    # the WebSocket URL also has ?token= and nothing depends on cookies alone.
    return f"{cfg.html5proxy_base_url}?token={token}&path=%3Ftoken%3D{token}"


def _validate(protocol: object, console_type: object) -> None:
    if not isinstance(protocol, str) or protocol not in KNOWN_PROTOCOLS:
        raise bad_request(f"Invalid input for field/attribute protocol. Value: {protocol}. {protocol!r} is not "
                          f"one of {sorted(KNOWN_PROTOCOLS)}")
    known_types = {t for types in KNOWN_PROTOCOLS.values() for t in types}
    if not isinstance(console_type, str) or console_type not in known_types:
        raise bad_request(f"Invalid input for field/attribute type. Value: {console_type}. {console_type!r} is "
                          f"not one of {sorted(known_types)}")
    if console_type not in KNOWN_PROTOCOLS[protocol]:  # type: ignore[index]
        raise bad_request(f"Console type {console_type} is not valid for protocol {protocol}.")
    if TYPE_PROTOCOL.get(console_type) != protocol:  # type: ignore[arg-type]
        raise bad_request(f"Unavailable console type {console_type}.")


def create_console(server_id: str, protocol: str, console_type: str) -> str:
    """Return a console URL with a fresh single-use token for the caller's ACTIVE instance."""
    _validate(protocol, console_type)
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    recheck(inst.project_id)
    if inst.vm_state != states.ACTIVE or not inst.host:
        raise conflict(f"Instance {inst.uuid} is not ready")
    endpoint = rpc.call("stratus.compute.get_console",
                        {"host": inst.host, "instance_uuid": inst.uuid, "kind": protocol},
                        queue=compute_queue(inst.host))
    token = secrets.token_urlsafe(32)
    digest = token_hash(token)
    req = {"token_hash": digest, "console_type": console_type, "host": endpoint["host"],
           "port": int(endpoint["port"]), "instance_uuid": inst.uuid, "ttl": get_settings().console_token_ttl}
    rpc.call("stratus.conductor.create_console_token", req,
             argsrepr=repr(({**req, "token_hash": digest[:8] + "..."},)))
    return console_url(console_type, token)


@bp.post("/servers/<server_id>/remote-consoles")
@enforce("project_member_api")
def remote_consoles(server_id: str) -> Response:
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


def _legacy(protocol: str):
    def handler(server_id: str, args: object) -> Response:
        if not isinstance(args, dict) or "type" not in args:
            raise bad_request("Invalid input for field/attribute type. 'type' is a required property")
        extra = set(args) - {"type"}
        if extra:
            raise bad_request(f"Additional properties are not allowed ({', '.join(map(repr, sorted(extra)))} "
                              f"{'was' if len(extra) == 1 else 'were'} unexpected)")
        url = create_console(server_id, protocol, args["type"])
        return jsonify({"console": {"type": args["type"], "url": url}})
    return handler


EXTRA_ACTIONS["os-getVNCConsole"] = _legacy("vnc")
EXTRA_ACTIONS["os-getSPICEConsole"] = _legacy("spice")


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
