"""Where a stack could leak a secret, and the secrets any stack's run must not leak: the admin password, any token
the stack issued (the database keeps only their hashes: token-shaped strings are hashed and looked up), and any
private key. ``scan`` reads every log file under the stack's state dir and its stored task results."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from harness.stack import ADMIN_PASSWORD, SERVICE_PASSWORD

# A bearer token as Stratus makes them (secrets.token_urlsafe(32)): 43 URL-safe characters.
_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def result_backend_text(stack) -> str:
    """Every stored task result: the filesystem backend's files, or Redis's celery-task-meta keys (RabbitMQ's
    rpc:// backend keeps none: replies are messages to their caller)."""
    if stack.backend.broker == "filesystem":
        return "\n".join(p.read_text(errors="replace") for p in (stack.state_dir / "results").rglob("*")
                         if p.is_file())
    if stack.backend.broker == "redis":
        import redis
        client = redis.Redis.from_url(stack.env["STRATUS_BROKER_URL"])
        return "\n".join(str(client.get(k)) for k in client.scan_iter("celery-task-meta-*"))
    return ""


def places(stack) -> dict[str, str]:
    """Every log file under the state dir (by relative path) and the result backend's stored results."""
    logs = {str(p.relative_to(stack.state_dir)): p.read_text(errors="replace")
            for p in sorted(Path(stack.state_dir).rglob("*.log"))}
    return {**logs, "result backend": result_backend_text(stack)}


def issued_token_hashes(stack) -> set[str]:
    from sqlalchemy import create_engine, text
    url = stack.env.get("STRATUS_DATABASE_URL") or f"sqlite:///{stack.state_dir / 'stratus.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return {row[0] for row in c.execute(text("SELECT id_hash FROM tokens"))}
    finally:
        engine.dispose()


def scan(stack, where: dict[str, str], secrets: dict[str, str] | None = None) -> list[str]:
    """What leaked where: ``secrets`` (what -> value), the admin password, issued tokens, private keys."""
    secrets = {"the admin password": ADMIN_PASSWORD, "the compute's service password": SERVICE_PASSWORD,
               **(secrets or {})}
    issued = issued_token_hashes(stack)
    assert issued, "the stack issued no token?"
    found = [f"{what} in {place}" for place, text in where.items() for what, value in secrets.items()
             if value in text]
    found += [f"a private key in {place}" for place, text in where.items() if _PRIVATE_KEY.search(text)]
    found += [f"token {t[:6]}... in {place}" for place, text in where.items()
              for t in sorted(set(_TOKEN_LIKE.findall(text))) if hashlib.sha256(t.encode()).hexdigest() in issued]
    return found
