"""The request context: who is calling, for which project, with which roles."""
from __future__ import annotations

import dataclasses

from flask import g

from core.errors import ApiError


@dataclasses.dataclass(frozen=True)
class RequestContext:
    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    roles: tuple[str, ...]
    request_id: str
    app_cred_id: str | None = None  # the application credential the token was issued for
    system_scope: str | None = None  # "all" for a system-scoped token (then project_id is None)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_manager(self) -> bool:
        return self.is_admin or "manager" in self.roles

    @property
    def is_member(self) -> bool:
        return self.is_manager or "member" in self.roles

    @property
    def is_reader(self) -> bool:
        return self.is_member or "reader" in self.roles


def current() -> RequestContext:
    ctx = g.get("context")
    if ctx is None:
        raise ApiError(401, "The request you have made requires authentication.")
    return ctx
