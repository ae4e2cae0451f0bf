"""Encryption of secrets at rest (admin_pass, user_data) with a Fernet key from the state directory."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.fernet import Fernet

from app.settings import get_settings


def _key_path() -> Path:
    s = get_settings()
    return Path(s.secret_key_file) if s.secret_key_file else s.state_path / "secret.key"


@functools.cache
def _fernet() -> Fernet:
    path = _key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(Fernet.generate_key())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # first writer wins; others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return Fernet(path.read_bytes().strip())


def encrypt(value: str | None) -> str | None:
    return None if value is None else _fernet().encrypt(value.encode()).decode()


def decrypt(token: str | None) -> str | None:
    return None if token is None else _fernet().decrypt(token.encode()).decode()
