"""STRATUS_BROKER_SSL_* → Celery's broker_use_ssl (core/broker_tls.py)."""
from __future__ import annotations

import ssl

import pytest

from core.broker_tls import BrokerTLSError, broker_ssl_options


def test_amqps_always_verifies_the_broker_and_its_name():
    assert broker_ssl_options("amqps://u:p@mq.example:5671//") == {
        "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "mq.example"}
    assert broker_ssl_options("amqps://u:p@mq.example:5671//", "/ca.pem", "/c.pem", "/c.key") == {
        "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "mq.example", "ca_certs": "/ca.pem",
        "certfile": "/c.pem", "keyfile": "/c.key"}


def test_rediss_takes_the_files_or_leaves_the_url_query_alone():
    assert broker_ssl_options("rediss://:pw@r.example:6379/0?ssl_cert_reqs=required") is None
    assert broker_ssl_options("rediss://:pw@r.example:6379/0", ca="/ca.pem") == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True, "ssl_ca_certs": "/ca.pem"}


def test_plain_urls_have_no_tls_and_refuse_tls_settings():
    assert broker_ssl_options("redis://127.0.0.1:6379/0") is None
    assert broker_ssl_options("filesystem://") is None
    with pytest.raises(BrokerTLSError, match="amqps:// or rediss://"):
        broker_ssl_options("amqp://guest:guest@127.0.0.1//", ca="/ca.pem")


def test_a_certificate_needs_its_key():
    with pytest.raises(BrokerTLSError, match="go together"):
        broker_ssl_options("amqps://h//", cert="/c.pem")
