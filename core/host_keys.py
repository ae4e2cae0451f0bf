"""Secrets sealed for one compute host (issue 25): each compute host keeps an X25519 key pair in its state
directory and reports the public key with its service report; the conductor seals the secrets a step needs on
that host (user data for a config drive, an admin password) with an ephemeral X25519 key, HKDF-SHA256 and
ChaCha20-Poly1305, bound to the instance (the AEAD's associated data). What the broker, Flower and other hosts
see is ciphertext; only the destination host's private key opens it. No database here: compute hosts import this.
"""
from __future__ import annotations

import base64
import functools
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import get_settings

PREFIX = "x25519-chacha20poly1305:"
_INFO = b"stratus sealed secrets v1"
_LOCK = threading.Lock()


class SealError(Exception):
    """A sealed block this host cannot open (sealed for another host or key, altered, or for another instance)."""


def _key_path(host: str) -> Path:
    return get_settings().state_path / "host-keys" / f"{host}.x25519"


@functools.lru_cache(maxsize=None)
def private_key(host: str) -> X25519PrivateKey:
    """This host's private key, created on first use (mode 0600; the first writer among processes wins)."""
    with _LOCK:
        path = _key_path(host)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(X25519PrivateKey.generate().private_bytes_raw())
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return X25519PrivateKey.from_private_bytes(path.read_bytes())


def public_key(host: str) -> str:
    """The host's public key as reported to the conductor (base64 of the 32 raw bytes)."""
    return base64.b64encode(private_key(host).public_key().public_bytes_raw()).decode()


def _aead(shared: bytes, ephemeral: bytes, recipient: bytes) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO).derive(shared)
    return ChaCha20Poly1305(key)


def seal(recipient_b64: str, plaintext: bytes, bound_to: str) -> str:
    """``plaintext`` readable only with the private key of ``recipient_b64`` and only as ``bound_to``."""
    recipient = base64.b64decode(recipient_b64)
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    nonce = os.urandom(12)
    box = _aead(shared, eph_pub, recipient).encrypt(nonce, plaintext, bound_to.encode())
    return PREFIX + base64.b64encode(eph_pub + nonce + box).decode()


def open_sealed(host: str, token: str, bound_to: str) -> bytes:
    """Open a block ``seal`` made for this host's public key; SealError when it is not for this host and
    ``bound_to``."""
    if not token.startswith(PREFIX):
        raise SealError("not a sealed block")
    try:
        raw = base64.b64decode(token[len(PREFIX):])
        eph_pub, nonce, box = raw[:32], raw[32:44], raw[44:]
        key = private_key(host)
        shared = key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        return _aead(shared, eph_pub, key.public_key().public_bytes_raw()).decrypt(nonce, box, bound_to.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealError(f"the sealed secrets cannot be opened on host {host} (sealed for another host's key, or "
                        f"altered)") from exc
