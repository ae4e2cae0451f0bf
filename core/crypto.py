"""Encryption of secrets at rest (admin_pass, user_data) with a Fernet key from the state directory, the hash
under which bearer tokens (API tokens, console tokens) are stored and looked up, and the fingerprints of key
pairs' public keys (parsed by ``cryptography``, as Nova's nova/crypto.py does)."""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
import threading
from pathlib import Path

from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization

from core.settings import get_settings


def _key_path() -> Path:
    s = get_settings()
    return Path(s.secret_key_file) if s.secret_key_file else s.state_path / "secret.key"


_KEY_LOCK = threading.Lock()


@functools.cache
def _fernet() -> Fernet:
    with _KEY_LOCK:  # the API's threads meet here on their first secret; one of them creates the key
        path = _key_path()
        if not path.exists():
            _create_key(path)
        return Fernet(path.read_bytes().strip())


def _create_key(path: Path) -> None:
    """Write a new key under a name of this process and thread alone, readable by the owner from the first
    byte, then link it into place: the first writer among processes wins and the others read its key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def encrypt(value: str | None) -> str | None:
    return None if value is None else _fernet().encrypt(value.encode()).decode()


def decrypt(token: str | None) -> str | None:
    return None if token is None else _fernet().decrypt(token.encode()).decode()


def token_hash(token: str) -> str:
    """SHA-256 of a bearer token, hex: what the database keeps of it (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


class InvalidKeypair(ValueError):
    """A public key that does not parse; ``str()`` is Nova's reason (its message is "Keypair data is invalid: ...")."""


def ssh_fingerprint(public_key: str) -> str:
    """Nova's generate_fingerprint: the key must load as an OpenSSH public key (``ssh-rsa JUNK`` and blobs that are
    no key of their type do not); the fingerprint is the MD5 of its blob, colon-separated hex."""
    try:
        serialization.load_ssh_public_key(public_key.encode())
        blob = base64.b64decode(public_key.split()[1])
    except Exception as exc:  # ValueError, UnsupportedAlgorithm, binascii.Error...: Nova catches them all
        raise InvalidKeypair("failed to generate fingerprint") from exc
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def x509_fingerprint(pem: str) -> str:
    """Nova's generate_x509_fingerprint: the SHA-1 of a PEM certificate, colon-separated hex."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InvalidKeypair(f"failed to generate X509 fingerprint. Error message: {exc}") from exc
    digest = cert.fingerprint(hashes.SHA1()).hex()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
