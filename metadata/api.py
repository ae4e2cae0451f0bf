"""Routes of the metadata service: every path goes through one view that identifies the caller first."""
from __future__ import annotations

import dataclasses
import hmac
import logging
import threading
import time

from flask import Blueprint, Response, request
from sqlalchemy import select

from core import metadata_query
from core.db import read_session
from core.errors import ApiError
from core.metadata_docs import GRIZZLY, MAX_PASSWORD, OPENSTACK_VERSIONS, InstanceMetadata, NotFound
from core.models import InstancePassword
from core.settings import get_settings
from metadata.signing import ADDRESS_HEADER, HOST_HEADER, HOST_SIGNATURE_HEADER, sign, valid_host_signature

LOG = logging.getLogger(__name__)
bp = Blueprint("metadata", __name__)

_cache: dict[str, tuple[float, InstanceMetadata]] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 4096


def _text(body: str | bytes, status: int, mimetype: str = "text/plain") -> Response:
    return Response(body, status=status, mimetype=mimetype)


def _not_found() -> Response:
    return _text("404 Not Found\n\nThe resource could not be found.\n", 404)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _identify() -> str:
    """The UUID of the live instance this request speaks for, or raise _Refused."""
    secret = get_settings().metadata_proxy_shared_secret
    instance_id = request.headers.get("X-Instance-ID")
    signature = request.headers.get("X-Instance-ID-Signature")
    if request.headers.get(HOST_HEADER) is not None or request.headers.get(HOST_SIGNATURE_HEADER) is not None:
        if instance_id is not None or signature is not None:
            raise _Refused(403, "Instance identity headers are not accepted with a host's.")
        return _identify_relayed(secret)
    if instance_id is not None or signature is not None:
        if not secret:
            LOG.warning("refused identity headers from %s: no metadata proxy is configured", request.remote_addr)
            raise _Refused(403, "Instance identity headers are not accepted here.")
        if not instance_id or not signature or not hmac.compare_digest(sign(instance_id, secret), signature):
            LOG.warning("X-Instance-ID-Signature mismatch from %s (instance %s)", request.remote_addr, instance_id)
            raise _Refused(403, "Invalid proxy request signature.")
        tenant = request.headers.get("X-Tenant-ID")
        with read_session() as s:
            inst = metadata_query.live_instance_by_uuid(s, instance_id)
            if inst is None:
                raise _Refused(404, "Instance not found.")
            if tenant is not None and tenant != inst.project_id:
                LOG.warning("X-Tenant-ID %s does not match the project of instance %s", tenant, instance_id)
                raise _Refused(404, "Instance not found.")
            return inst.uuid
    address = request.remote_addr or ""
    with read_session() as s:
        inst = metadata_query.live_instance_by_address(s, address)
        if inst is None:
            LOG.info("metadata request from %s, which is no instance's address", address)
            raise _Refused(404, "No instance has this address.")
        if not direct_host_allowed(get_settings().metadata_direct_hosts, inst.host):
            LOG.warning("direct metadata request from %s, the address of instance %s on host %s, whose guests "
                        "come through its proxy: refused", address, inst.uuid, inst.host)
            raise _Refused(404, "No instance has this address.")
        return inst.uuid


def direct_host_allowed(setting: str, host: str | None) -> bool:
    """Whether ``metadata_direct_hosts`` lets a guest on ``host`` be identified by its own source address."""
    names = {h.strip() for h in setting.split(",") if h.strip()} - {"none"}
    return "*" in names or host in names


def _identify_relayed(secret: str) -> str:
    """A request relayed by a compute host's proxy: the guest's address identifies the instance, as for a
    direct request, and that instance must be on the host whose key signed the relay (metadata/signing.py)."""
    host = request.headers.get(HOST_HEADER) or ""
    address = request.headers.get(ADDRESS_HEADER) or ""
    if not secret:
        LOG.warning("refused a relayed request from %s: no metadata proxy is configured", request.remote_addr)
        raise _Refused(403, "Instance identity headers are not accepted here.")
    if not host or not address or not valid_host_signature(
            secret, host, address, request.headers.get(HOST_SIGNATURE_HEADER) or ""):
        LOG.warning("%s mismatch from %s (host %s, address %s)", HOST_SIGNATURE_HEADER, request.remote_addr,
                    host, address)
        raise _Refused(403, "Invalid proxy request signature.")
    with read_session() as s:
        inst = metadata_query.live_instance_by_address(s, address)
        if inst is None:
            LOG.info("metadata request relayed by host %s from %s, which is no instance's address", host, address)
            raise _Refused(404, "No instance has this address.")
        if inst.host != host:
            # A guest on ``host`` using the address of a guest elsewhere (or a host speaking for another's guest).
            LOG.warning("host %s relayed a request from %s, the address of instance %s on host %s: refused",
                        host, address, inst.uuid, inst.host)
            raise _Refused(404, "No instance has this address.")
        return inst.uuid


def _metadata(uuid: str) -> InstanceMetadata:
    ttl = get_settings().metadata_cache_ttl
    now = time.monotonic()
    if ttl > 0:
        with _cache_lock:
            hit = _cache.get(uuid)
            if hit and hit[0] > now:
                return hit[1]
    with read_session() as s:
        md = metadata_query.load(s, uuid)
    if md is None:
        raise _Refused(404, "Instance not found.")
    if ttl > 0:
        with _cache_lock:
            if len(_cache) >= _CACHE_MAX:
                for key in [k for k, (exp, _) in _cache.items() if exp <= now] or list(_cache)[:_CACHE_MAX // 2]:
                    _cache.pop(key, None)
            _cache[uuid] = (now + ttl, md)
    return md


def _password(uuid: str) -> str | None:
    with read_session() as s:
        return s.scalar(select(InstancePassword.password).where(InstancePassword.instance_uuid == uuid))


def invalidate(uuid: str) -> None:
    with _cache_lock:
        _cache.pop(uuid, None)


@bp.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST"])
@bp.route("/<path:path>", methods=["GET", "HEAD", "POST"])
def serve(path: str) -> Response:
    try:
        uuid = _identify()
        if request.method == "POST":
            return _post(uuid, path)
        md = _metadata(uuid)
        if path.rstrip("/").endswith("/password"):
            # Written by a POST that any worker process may have served: never from the cache.
            md = dataclasses.replace(md, password=_password(uuid))
        body, mimetype = md.lookup(path)
        return _text(body, 200, mimetype)
    except _Refused as exc:
        return _text(f"{exc.status} {exc.message}\n", exc.status)
    except NotFound:
        return _not_found()
    except Exception:  # a guest must never see a traceback; the operator sees it in the log
        LOG.exception("metadata request %s %s failed", request.method, request.path)
        return _text("500 Internal Server Error\n", 500)


def _post(uuid: str, path: str) -> Response:
    parts = [p for p in path.split("/") if p]
    if len(parts) != 3 or parts[0] != "openstack" or parts[2] != "password" or not (
            parts[1] == "latest" or (parts[1] in OPENSTACK_VERSIONS and parts[1] >= GRIZZLY)):
        return _text("405 Method Not Allowed\n", 405)
    data = request.get_data(cache=False)
    if len(data) > MAX_PASSWORD:
        return _text("400 Request is too large.\n", 400)
    # Celery's client (kombu, the broker's and backend's libraries: about 0.3 s of imports in each worker) is
    # loaded by the first password a guest posts, not by every metadata worker at start.
    from tasks.messaging import rpc
    try:
        rpc.call("stratus.conductor.set_metadata_password", uuid, data.decode("utf-8", "replace"),
                 argsrepr=repr((uuid, "<redacted>")))
    except ApiError as exc:
        return _text(f"{exc.code} {exc.message}\n", exc.code)
    invalidate(uuid)
    return _text("", 200)
