"""TLS to the broker: the options Celery and kombu take for ``amqps://`` and ``rediss://`` URLs.

Set by STRATUS_BROKER_SSL_CA (the CA that signed the broker's certificate; empty: the system's CAs) and, where the
broker asks clients for a certificate, STRATUS_BROKER_SSL_CERT and STRATUS_BROKER_SSL_KEY. The broker's
certificate is always verified, its host name included.
"""
from __future__ import annotations

import ssl
from urllib.parse import urlsplit

AMQP_TLS = ("amqps://",)
REDIS_TLS = ("rediss://",)


class BrokerTLSError(ValueError):
    """The TLS settings contradict each other or the broker URL."""


def broker_ssl_options(url: str, ca: str = "", cert: str = "", key: str = "") -> dict | None:
    """Celery's ``broker_use_ssl`` for ``url`` (None: the URL does not use TLS and none is asked for)."""
    if bool(cert) != bool(key):
        raise BrokerTLSError("STRATUS_BROKER_SSL_CERT and STRATUS_BROKER_SSL_KEY go together (a client "
                             "certificate and its private key)")
    if url.startswith(AMQP_TLS):
        # py-amqp's keys (amqp.transport.SSLTransport): with server_hostname the name is checked as well.
        options = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": urlsplit(url).hostname}
        return options | _files(ca, cert, key, "ca_certs", "certfile", "keyfile")
    if url.startswith(REDIS_TLS):
        # redis-py's keys; without any file given, the URL's own query (ssl_cert_reqs=...) still applies.
        if not (ca or cert):
            return None
        options = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
        return options | _files(ca, cert, key, "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
    if ca or cert:
        raise BrokerTLSError(f"STRATUS_BROKER_SSL_* are set but the broker URL ({urlsplit(url).scheme}://) does "
                             "not use TLS: use amqps:// or rediss://")
    return None


def _files(ca: str, cert: str, key: str, ca_key: str, cert_key: str, key_key: str) -> dict:
    given = {ca_key: ca, cert_key: cert, key_key: key}
    return {name: path for name, path in given.items() if path}
