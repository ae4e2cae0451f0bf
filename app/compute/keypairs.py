"""/os-keypairs: import or generate (before 2.92) SSH key pairs; written by the conductor."""
from __future__ import annotations

from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute.request_body import body_schema
from app.compute.schemas import KeypairCreateSchema, KeypairCreateV292Schema
from app.compute.views import base_url, compute_prefix, iso_usec
from app.context import current
from app.microversion import current as api_version
from app.policy import enforce, recheck
from core import crypto
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import KeyPair
from tasks.messaging import rpc

bp = Blueprint("keypairs", __name__)


def fingerprint(public_key: str, key_type: str = "ssh") -> str:
    """The key's fingerprint as Nova computes it (core/crypto.py); 400 with Nova's message for a key that does
    not parse."""
    try:
        return crypto.x509_fingerprint(public_key) if key_type == "x509" else crypto.ssh_fingerprint(public_key)
    except crypto.InvalidKeypair as exc:
        raise bad_request(f"Keypair data is invalid: {exc}") from None


def generate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode() + " Generated-by-Stratus"
    return private, public


def _user_id() -> str:
    ctx = current()
    wanted = request.args.get("user_id")
    if wanted and wanted != ctx.user_id:
        if not api_version().matches("2.10"):
            raise bad_request("Additional properties are not allowed ('user_id' was unexpected)")
        recheck(target_user=wanted)
        return wanted
    return ctx.user_id


def _body(kp: KeyPair, full: bool) -> dict:
    body = {"name": kp.name, "public_key": kp.public_key, "fingerprint": kp.fingerprint}
    if api_version().matches("2.2"):
        body["type"] = kp.type
    if full:
        body.update({"user_id": kp.user_id, "id": kp.id, "created_at": iso_usec(kp.created_at), "deleted": False,
                     "deleted_at": None, "updated_at": None})
    return body


MAX_LIMIT = 1000


def _page() -> tuple[int | None, str | None]:
    """2.35's ``limit`` and ``marker`` (a key pair name); Nova ignores them before 2.35."""
    if not api_version().matches("2.35"):
        return None, None
    raw = request.args.get("limit")
    if raw is not None and not (raw.isdigit() and int(raw) >= 0):
        raise bad_request(f"Invalid input for query parameters limit. Value: {raw}. '{raw}' does not match "
                          f"'^[0-9]*$'")
    return (None if raw is None else int(raw)), request.args.get("marker")


@bp.get("/os-keypairs")
@enforce("authenticated")
def list_keypairs():
    limit, marker = _page()
    user_id = _user_id()
    query = select(KeyPair).where(KeyPair.user_id == user_id).order_by(KeyPair.name)
    with read_session() as s:
        if marker is not None:
            if s.scalars(query.where(KeyPair.name == marker)).first() is None:
                raise bad_request(f"Marker {marker} could not be found.")
            query = query.where(KeyPair.name > marker)
        rows = list(s.scalars(query.limit(min(limit if limit is not None else MAX_LIMIT, MAX_LIMIT))))
        body: dict = {"keypairs": [{"keypair": _body(kp, False)} for kp in rows]}
    if api_version().matches("2.35") and rows and len(rows) == (limit if limit is not None else MAX_LIMIT):
        params = {**request.args.to_dict(), "marker": rows[-1].name}
        query_string = "&".join(f"{k}={quote(v)}" for k, v in params.items())
        body["keypairs_links"] = [{"rel": "next", "href": f"{base_url()}{compute_prefix()}/os-keypairs?"
                                                          f"{query_string}"}]
    return jsonify(body)


def _get(name: str, user_id: str) -> KeyPair:
    with read_session() as s:
        kp = s.scalars(select(KeyPair).where(KeyPair.user_id == user_id, KeyPair.name == name)).first()
    if kp is None:
        raise not_found(f"Keypair {name} not found for user {user_id}")
    return kp


@bp.get("/os-keypairs/<name>")
@enforce("authenticated")
def show_keypair(name: str):
    return jsonify({"keypair": _body(_get(name, _user_id()), True)})


@bp.post("/os-keypairs")
@enforce("authenticated")
@body_schema(KeypairCreateSchema, root="keypair", versions={"2.92": KeypairCreateV292Schema})
def create_keypair(body: dict):
    v = api_version()
    if "type" in body and not v.matches("2.2"):
        raise bad_request("Additional properties are not allowed ('type' was unexpected)")
    if not v.matches("2.92") and set(body["name"]) & {"@", "."}:  # 2.92 allows '@' and '.'
        raise bad_request("Keypair name contains unsafe characters")
    user_id = current().user_id
    if "user_id" in body and body["user_id"] != user_id:
        if not v.matches("2.10"):
            raise bad_request("Additional properties are not allowed ('user_id' was unexpected)")
        recheck(target_user=body["user_id"])
        user_id = body["user_id"]
    private_key = None
    public_key = body.get("public_key")
    if public_key is None:
        if v.matches("2.92"):
            raise bad_request(f"Invalid input for field/attribute keypair. Value: {body!r}. 'public_key' is a "
                              f"required property")
        private_key, public_key = generate()
    key_type = body.get("type", "ssh")
    fp = fingerprint(public_key, key_type)
    rpc.call("stratus.conductor.create_keypair", user_id, body["name"], public_key, fp, key_type,
             current().project_id or "")
    out = {"name": body["name"], "public_key": public_key, "fingerprint": fp, "user_id": user_id}
    if private_key:
        out["private_key"] = private_key
    if v.matches("2.2"):
        out["type"] = key_type
    return jsonify({"keypair": out}), (201 if v.matches("2.2") else 200)


@bp.delete("/os-keypairs/<name>")
@enforce("authenticated")
def delete_keypair(name: str):
    rpc.call("stratus.conductor.delete_keypair", _user_id(), name)
    return "", (204 if api_version().matches("2.2") else 202)
