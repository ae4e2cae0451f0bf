"""Periodic housekeeping run by Celery beat."""
from __future__ import annotations

import logging

from sqlalchemy import delete

from app.db import write_session
from app.models import Token, utcnow
from tasks.celery_app import celery

LOG = logging.getLogger(__name__)


@celery.task(name="stratus.conductor.purge_expired_tokens", ignore_result=True)
def purge_expired_tokens() -> int:
    with write_session() as s:
        n = s.execute(delete(Token).where((Token.expires_at < utcnow()) | Token.revoked.is_(True))).rowcount
    if n:
        LOG.info("purged %d expired tokens", n)
    return n
