"""Engine and sessions, one engine per process, shared by the API and the workers."""
from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, Result
from sqlalchemy.orm import Session, sessionmaker

from core.json_digits import has_long_digit_run
from core.settings import get_settings


def _json_loads(text: str | bytes) -> object:
    """JSON columns decoded by orjson (a quarter of the time of the standard library's decoder, two columns per row of
    a server list); what it refuses (NaN) or may misread (a run of 19+ digits) goes the old way."""
    if not has_long_digit_run(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin_immediate(conn) -> None:
    # Take the write lock at BEGIN so read-then-write transactions cannot deadlock-upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_deferred(conn) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str, *, for_writes: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               json_deserializer=_json_loads)
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record):  # let SQLAlchemy's "begin" event issue BEGIN
            dbapi_conn.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin_immediate if for_writes else _sqlite_begin_deferred)
        return engine
    # No pool_pre_ping: it costs a round trip (a SELECT 1 transaction on PostgreSQL, doubling its transaction
    # count) on every checkout. A connection the server dropped fails its first statement instead; SQLAlchemy then
    # invalidates the pool, the request gets the usual 503 ("database temporarily unavailable") and the next one
    # reconnects. pool_recycle keeps connections younger than the servers' idle timeouts.
    if url.startswith("mysql"):
        return create_engine(url, pool_recycle=3600, isolation_level="READ COMMITTED", json_deserializer=_json_loads)
    # PostgreSQL through psycopg 3 (core.settings names it for a bare postgresql:// URL): it prepares a statement on
    # the server once a connection has run it five times (prepare_threshold), so the server no longer parses and
    # plans the boot's statements each time, about a third of its CPU per boot with psycopg2 (bench/README.md).
    return create_engine(url, pool_recycle=3600, json_deserializer=_json_loads)


@functools.cache
def get_engine() -> Engine:
    return make_engine(get_settings().sqlalchemy_url)


@functools.cache
def _write_engine() -> Engine:
    url = get_settings().sqlalchemy_url
    return make_engine(url, for_writes=True) if url.startswith("sqlite") else get_engine()


def engines() -> list[Engine]:
    """The engines sessions run on (on SQLite writes have their own), e.g. to listen to their statements."""
    return list({id(e): e for e in (get_engine(), _write_engine())}.values())


@functools.cache
def _read_engine() -> Engine:
    """On PostgreSQL, reads run in autocommit: under its READ COMMITTED each statement takes its own snapshot even
    inside a transaction, so a read-only BEGIN ... ROLLBACK buys nothing and costs two round trips. The option
    engine shares the pool; psycopg 3 switches with its ``autocommit`` attribute, which sends nothing. SQLite
    keeps its snapshot transactions; on MariaDB switching costs a SET per checkout, more than the BEGIN it saves."""
    engine = get_engine()
    return engine.execution_options(isolation_level="AUTOCOMMIT") if engine.dialect.name == "postgresql" else engine


@functools.cache
def _factory(for_writes: bool) -> sessionmaker[Session]:
    return sessionmaker(bind=_write_engine() if for_writes else _read_engine(), expire_on_commit=False)


def reset() -> None:
    """Dispose the cached engines and forget cached settings (tests and benchmarks that switch databases)."""
    from core import settings
    for cached in (get_engine, _write_engine):
        if cached.cache_info().currsize:
            cached().dispose()
    for cached in (_factory, _read_engine, _write_engine, get_engine, settings.get_settings):
        cached.cache_clear()


def plain_rows(s: Session, statement: Any, params: dict | None = None) -> Result:
    """Run a SELECT of plain columns on the session's connection: the same rows ``s.execute`` gives, without the
    ORM's execution layer, which a select of mapped attributes takes (50-100 µs of Python per statement). Pending
    changes are flushed first, as the session's autoflush would. Not for a select of entities (it returns rows)."""
    s.flush()
    return s.connection().execute(statement, params)


@contextlib.contextmanager
def read_session() -> Iterator[Session]:
    """A session for reads; nothing is committed.

    close() (not rollback()) ends it: it rolls the transaction back without expiring the loaded objects, so they
    stay readable after the block (rollback() would expire them and any later attribute access would raise
    DetachedInstanceError)."""
    session = _factory(False)()
    try:
        yield session
    finally:
        session.close()


@contextlib.contextmanager
def write_session() -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    session = _factory(True)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
