"""Keystone's account lockout ([security_compliance] lockout_failure_attempts, lockout_duration; off by default).

A user whose failed password sign-ins in a row reach ``lockout_failure_attempts`` is refused, even with the right
password, for ``lockout_duration`` seconds after the last failure, or (duration 0) until an admin enables it
again. A successful sign-in resets the count; so does an admin's ``enabled: true``.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, update

from core import db
from core.errors import ApiError
from core.models import User, utcnow
from core.settings import get_settings


def _reached(user: User) -> bool:
    attempts = get_settings().lockout_failure_attempts
    return bool(attempts) and (user.failed_auth_count or 0) >= attempts


def _lock_over(user: User, now: dt.datetime) -> bool:
    """Whether the user's lockout has run its duration (never, with duration 0)."""
    duration = get_settings().lockout_duration
    return bool(duration) and user.failed_auth_at is not None \
        and now > user.failed_auth_at + dt.timedelta(seconds=duration)


def check_not_locked(user: User) -> None:
    """401 with Keystone's AccountLocked message while the user is locked out."""
    if _reached(user) and not _lock_over(user, utcnow()):
        raise ApiError(401, f"The account is locked for user: {user.id}.")


def record_failure(user: User) -> None:
    """Count a failed password sign-in (only while lockout is on); after a lockout that ran out, from 1 again."""
    if not get_settings().lockout_failure_attempts:
        return
    now = utcnow()
    count = 1 if _reached(user) and _lock_over(user, now) else func.coalesce(User.failed_auth_count, 0) + 1
    with db.write_session() as s:
        s.execute(update(User).where(User.id == user.id).values(failed_auth_count=count, failed_auth_at=now))


def reset(user: User) -> None:
    """Forget the user's failures after a successful sign-in (no write when there are none)."""
    if user.failed_auth_count:
        with db.write_session() as s:
            s.execute(update(User).where(User.id == user.id).values(failed_auth_count=None, failed_auth_at=None))
