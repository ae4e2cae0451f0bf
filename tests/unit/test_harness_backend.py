"""harness.stack.Backend: each user of a shared backend owns what it creates (a fuzz stack's teardown dropped the
session stack's MariaDB database, which the session's secret scan then could not read)."""
from __future__ import annotations

from harness.stack import BACKENDS


def test_an_owned_copy_cleans_up_only_what_it_made():
    shared = BACKENDS["sqlite-filesystem"]
    first, second = shared.own(), shared.own()
    ran: list[str] = []
    first.cleanups.append(lambda: ran.append("first"))
    second.cleanups.append(lambda: ran.append("second"))
    first.cleanup()
    assert ran == ["first"] and second.cleanups and not shared.cleanups
    second.cleanup()
    assert ran == ["first", "second"]
    assert (first.name, first.database, first.broker) == (shared.name, shared.database, shared.broker)
