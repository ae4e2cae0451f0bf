"""How the metadata service trusts a relayed request (pure HMAC, no Flask, no DB: the per-host proxy uses it).

- Nova's form, one shared secret: ``X-Instance-ID`` and ``X-Instance-ID-Signature`` = HMAC-SHA256(secret, id).
- A per-host proxy's form (``metadata/proxy.py``): ``X-Forwarded-For`` (the guest's address), ``X-Stratus-Host``
  and ``X-Stratus-Host-Signature`` = HMAC-SHA256(host key, "<host>\\n<address>"), where the host key is
  HMAC-SHA256(secret, "stratus-metadata-host\\0<host>"). A compute host holds only its own key, so even a
  compromised host can speak only for addresses of guests the database places on it.
"""
from __future__ import annotations

import hashlib
import hmac

HOST_HEADER = "X-Stratus-Host"
HOST_SIGNATURE_HEADER = "X-Stratus-Host-Signature"
ADDRESS_HEADER = "X-Forwarded-For"


def sign(instance_id: str, secret: str) -> str:
    """Nova's X-Instance-ID-Signature: HMAC-SHA256 of the instance id, hex."""
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def host_key(secret: str, host: str) -> str:
    """The key of one compute host's proxy, derived from the service's shared secret."""
    return hmac.new(secret.encode(), b"stratus-metadata-host\0" + host.encode(), hashlib.sha256).hexdigest()


def host_signature(key: str, host: str, address: str) -> str:
    """What a host's proxy sends for a guest's request from ``address``."""
    return hmac.new(key.encode(), f"{host}\n{address}".encode(), hashlib.sha256).hexdigest()


def valid_host_signature(secret: str, host: str, address: str, signature: str) -> bool:
    return hmac.compare_digest(host_signature(host_key(secret, host), host, address), signature)
