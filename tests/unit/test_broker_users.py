"""The per-host broker permission builders (tasks/messaging/broker_users.py); the real brokers' verdicts are in
tests/functional/test_broker_credentials.py."""
from __future__ import annotations

import re

import pytest

from tasks.messaging.broker_users import (host_broker_url, publish_queues, rabbitmq_permissions, redis_acl_rules,
                                          user_name)

PIDBOX = "compute-a@vm1.celery.pidbox"
REPLY_QUEUE = "6f1c1d4e-3a8b-3c2d-9e0f-0123456789ab"


def _allows(regex: str, name: str) -> bool:
    return re.search(regex, name) is not None


def test_rabbitmq_read_reaches_own_queues_only():
    perms = rabbitmq_permissions(["a", "a2"])
    for name in ("compute.a", "compute.a2", PIDBOX, "celery.pidbox", REPLY_QUEUE):
        assert _allows(perms.read, name), name
    for name in ("conductor", "scheduler", "compute.b", "compute.a.x", "compute.ab", "xcompute.a",
                 "compute-b@vm1.celery.pidbox", "compute-a@vm1@x.celery.pidbox", "celeryev", "amq.default",
                 "reply.celery.pidbox", "compute.a\nconductor"):
        assert not _allows(perms.read, name), name


def test_rabbitmq_write_and_configure():
    perms = rabbitmq_permissions(["a"])
    # Another host's exchange: a move's next step runs there (published, not declared or read).
    for name in ("compute.a", "conductor", "amq.default", "celeryev", "reply.celery.pidbox", PIDBOX, "compute.b"):
        assert _allows(perms.write, name), name
    # celery.pidbox written is a broadcast to every worker (shutdown).
    for name in ("celery.pidbox", "scheduler", "compute-b@vm1.celery.pidbox"):
        assert not _allows(perms.write, name), name
    # The conductor's queue is published to, never declared (no configure: no delete either).
    for name in ("conductor", "scheduler", "compute.b", "amq.default"):
        assert not _allows(perms.configure, name), name
    for name in ("compute.a", PIDBOX, "celery.pidbox", "reply.celery.pidbox", "celeryev", REPLY_QUEUE):
        assert _allows(perms.configure, name), name


def test_rabbitmq_host_names_are_literal():
    perms = rabbitmq_permissions(["a.b"])
    assert _allows(perms.read, "compute.a.b")
    assert not _allows(perms.read, "compute.aXb")
    with pytest.raises(ValueError):
        rabbitmq_permissions([])


def test_redis_rules():
    rules = redis_acl_rules(["a*"], "s3cret", db=2)
    assert rules[:3] == ["reset", "on", ">s3cret"]
    assert r"~compute.a\*" in rules and r"~_kombu.binding.compute.a\*" in rules
    assert "%W~conductor" in rules and "~conductor" not in rules and "%R~conductor" not in rules
    # Other task queues: write-only (the visibility sweep restores any consumer's messages), never read.
    assert "%W~compute.*" in rules and "%W~scheduler" in rules
    assert not [r for r in rules if r in ("~compute.*", "%R~compute.*", "%RW~compute.*", "~scheduler", "~*",
                                          "%R~*", "allkeys", "allchannels", "&*")]
    assert "&/2.celery.pidbox" in rules and "-@dangerous" in rules
    assert r"~compute-a\*@*.celery.pidbox" in rules


def test_urls():
    assert user_name("h1") == "compute-h1"
    assert host_broker_url("amqp://admin:pw@127.0.0.1:5672/%2Fstratus", "compute-h1", "p/w+") == \
        "amqp://compute-h1:p%2Fw%2B@127.0.0.1:5672/%2Fstratus"
    assert host_broker_url("rediss://:pw@ctl:6380/0?ssl_cert_reqs=required", "u", "p", "10.0.0.1:6380") == \
        "rediss://u:p@10.0.0.1:6380/0?ssl_cert_reqs=required"


def test_publish_queues_not_declared_by_host_users_only():
    queues = publish_queues("amqp://compute-h1:pw@h//")
    assert [(q.name, q.no_declare, q.exchange.name) for q in queues] == [("conductor", True, "conductor")]
    assert publish_queues("rediss://compute-h1:pw@h/0")[0].no_declare
    for url in ("amqp://guest:guest@h//", "redis://:pw@h/0", "redis://h/0", "filesystem://"):
        assert publish_queues(url) == [], url


def test_documented_tls_urls_are_what_the_libraries_accept():
    """README "Per-host broker credentials": the TLS URL forms it documents."""
    import ssl

    from celery import Celery
    from celery.backends.redis import RedisBackend
    from kombu import Connection
    from sqlalchemy import create_engine

    url = "rediss://u:p@h:6379/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/stratus/ca.pem"
    assert Connection(url).ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/stratus/ca.pem"}
    app = Celery("tls")
    assert RedisBackend(app=app, url=url).connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    with pytest.raises(ValueError):
        RedisBackend(app=app, url="rediss://u:p@h:6379/0")
    amqps = Connection("amqps://u:p@h:5671//")
    assert amqps.transport is not None and amqps.ssl is True  # the amqps transport turns ssl on
    engine = create_engine("mysql+pymysql://u:p@h/stratus?ssl_ca=/etc/stratus/ca.pem&ssl_check_hostname=true")
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    assert kwargs["ssl"] == {"ca": "/etc/stratus/ca.pem", "check_hostname": True}
    engine = create_engine("postgresql+psycopg://u:p@h/stratus?sslmode=verify-full&sslrootcert=/etc/stratus/ca.pem")
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    assert kwargs["sslmode"] == "verify-full" and kwargs["sslrootcert"] == "/etc/stratus/ca.pem"


def test_restrict_declarations_keeps_other_queues_undeclared():
    from celery import Celery

    from tasks.messaging.broker_users import restrict_declarations
    app = Celery("restrict")
    assert not restrict_declarations(app, "amqp://guest:guest@h//", ["a"])
    app = Celery("restrict")
    assert restrict_declarations(app, "amqp://compute-a:pw@h//", ["a"])
    queues = app.amqp.queues
    assert not queues["compute.a"].no_declare
    assert queues["compute.b"].no_declare and queues["conductor"].no_declare
