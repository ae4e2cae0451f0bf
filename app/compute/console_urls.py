"""A console's URL for a server: the API asks the instance's compute host where the guest's VNC/SPICE server
(or, for the serial console, its serial port's TCP listener) listens, makes a random token and has the conductor
store only its hash (core.crypto.token_hash), bound to the instance, the console type and that host/port, with an
expiry. The URL points at the console proxy
(``proxies/``), which lets the token through once. Used by ``POST /servers/{id}/remote-consoles``
(app/compute/consoles.py) and by the legacy ``os-getVNCConsole`` / ``os-getSPICEConsole`` / ``os-getSerialConsole``
actions here."""
from __future__ import annotations

import secrets
from collections.abc import Callable

from flask import Response, jsonify

from app.compute.instances import get_instance
from app.context import current
from app.policy import recheck
from core import states
from core.crypto import token_hash
from core.db import read_session
from core.errors import bad_request, conflict
from core.routing import compute_queue
from core.settings import get_settings
from tasks.messaging import rpc

# console type -> protocol it speaks; protocol -> types Nova knows for it
TYPE_PROTOCOL = {"novnc": "vnc", "spice-html5": "spice", "serial": "serial"}
KNOWN_PROTOCOLS = {"vnc": ("novnc", "xvpvnc"), "spice": ("spice-html5", "spice-direct"), "rdp": ("rdp-html5",),
                   "serial": ("serial",), "mks": ("webmks",)}


def console_url(console_type: str, token: str) -> str:
    cfg = get_settings()
    if console_type == "serial":  # Nova's form: the proxy's WebSocket URL itself
        return f"{cfg.serial_base_url}?token={token}"
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


def legacy_console_action(protocol: str) -> Callable[[str, object], Response]:
    """The handler of os-getVNCConsole / os-getSPICEConsole / os-getSerialConsole (before 2.6): ``{"type": ...}``
    -> ``{"console"}``."""
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
