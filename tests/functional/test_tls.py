"""TLS to the database and the broker, as README "Several machines / TLS" documents it: a whole stack (API,
conductor, scheduler, a compute worker) boots and deletes a server with private servers that accept nothing but
TLS with a client certificate of a throw-away CA: PostgreSQL (``hostssl ... cert``) with RabbitMQ (amqps://, the
STRATUS_BROKER_SSL_* settings), and MariaDB (a user ``REQUIRE X509``, ``require_secure_transport``) with Redis
(rediss://, TLS port only). Each server is also shown to refuse a
connection without the client certificate, so the stack's success is the settings' doing."""
from __future__ import annotations

import ssl
import subprocess

import pytest
import sqlalchemy
from kombu import Connection

from harness.stack import Stack
from tests.outage_support import (Client, PrivateBackend, PrivateMariaDB, PrivatePostgres, PrivateRabbitMQ,
                                  PrivateRedis)
from tests.tls_support import TLSFiles, make_tls_files

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _ssl_env(tls: TLSFiles) -> dict[str, str]:
    return {"STRATUS_BROKER_SSL_CA": str(tls.ca), "STRATUS_BROKER_SSL_CERT": str(tls.client_cert),
            "STRATUS_BROKER_SSL_KEY": str(tls.client_key)}


def _boot_and_delete(stack: Stack) -> None:
    api = Client(stack)
    booted = api.boot(api.image(), "tls")
    assert booted.status_code == 202, booted.text
    server_id = booted.json()["server"]["id"]
    settled = api.wait_settled({server_id}, 90)[server_id]
    assert settled["status"] == "ACTIVE", settled
    assert api.delete(server_id) == 204
    assert not api.wait_gone(60)


def _refused_without_client_cert(url: str, tls: TLSFiles) -> str:
    """The error a broker connection with the right CA but no client certificate gets (it must get one)."""
    options = ({"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(tls.ca), "server_hostname": "localhost"}
               if url.startswith("amqps") else {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(tls.ca)})
    try:
        with Connection(url, ssl=options, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            conn.default_channel  # noqa: B018  Redis connects lazily: the first channel talks to the server
    except Exception as exc:  # the library's own error: what matters is that there is one
        return repr(exc)
    raise AssertionError(f"{url} accepted a client without a certificate")


def test_postgresql_and_rabbitmq_over_tls_with_client_certificates(tmp_path):
    for missing in (PrivatePostgres.available(), PrivateRabbitMQ.available()):
        if missing:
            pytest.skip(f"!!! PRIVATE POSTGRESQL/RABBITMQ UNAVAILABLE: {missing} !!!")
    tls = make_tls_files(tmp_path / "tls")
    pg, rabbit = PrivatePostgres(), PrivateRabbitMQ(tls=tls)
    try:
        pg.init()
        pg.stop()
        pg.require_tls(tls)
        pg.start()
        rabbit.start()
        base = f"postgresql+psycopg://root@localhost:{pg.port}/stratus"
        for refused in (f"{base}?sslmode=disable", f"{base}?sslmode=verify-full&sslrootcert={tls.ca}"):
            with pytest.raises(sqlalchemy.exc.OperationalError):
                sqlalchemy.create_engine(refused).connect().close()
        assert _refused_without_client_cert(rabbit.tls_url, tls)

        db_url = (f"{base}?sslmode=verify-full&sslrootcert={tls.ca}&sslcert={tls.client_cert}"
                  f"&sslkey={tls.client_key}")
        backend = PrivateBackend("private-pg-tls-rabbitmq-tls", "postgresql", "rabbitmq", db_url=db_url,
                                 mq_url=rabbit.tls_url)
        stack = Stack(tmp_path / "stack", backend, compute_hosts="tls-1", extra_env=_ssl_env(tls))
        try:
            stack.start()
            _boot_and_delete(stack)
            # Every connection the stack holds is TLS: the broker's list, and the database's (pg_hba allows no other)
            listed = rabbit.ctl("list_connections", "ssl", "peer_cert_subject", "--no-table-headers", "--quiet")
            rows = [line.split("\t") for line in listed.stdout.splitlines() if line.strip()]
            assert rows and all(r[0] == "true" and "CN=root" in r[1] for r in rows), listed.stdout
            tls_sessions = stack.scalar_sql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                                            "WHERE a.datname = 'stratus' AND s.ssl AND s.client_dn = '/CN=root'")
            assert tls_sessions >= 2, tls_sessions  # this query's own session and the services'
        finally:
            stack.stop()
    finally:
        rabbit.close()
        pg.close()


def test_mariadb_and_redis_over_tls_with_client_certificates(tmp_path):
    for missing in (PrivateMariaDB.available(), PrivateRedis.available()):
        if missing:
            pytest.skip(f"!!! PRIVATE MARIADB/REDIS UNAVAILABLE: {missing} !!!")
    tls = make_tls_files(tmp_path / "tls")
    redis, mariadb = PrivateRedis(durable=False, tls=tls), PrivateMariaDB(tls)
    try:
        redis.start()
        mariadb.start()
        assert _refused_without_client_cert(redis.url, tls)
        for refused in (mariadb.url(with_client_cert=False), f"mysql+pymysql://root@127.0.0.1:{mariadb.port}/stratus"):
            with pytest.raises(sqlalchemy.exc.OperationalError):
                sqlalchemy.create_engine(refused).connect().close()
        stack = Stack(tmp_path / "stack", PrivateBackend("private-mariadb-tls-redis-tls", "mariadb", "redis",
                                                         db_url=mariadb.url(), mq_url=redis.url),
                      compute_hosts="tls-1", extra_env=_ssl_env(tls))
        try:
            stack.start()
            _boot_and_delete(stack)
            clients = subprocess.run(["redis-cli", "--tls", "--cacert", str(tls.ca), "--cert", str(tls.client_cert),
                                      "--key", str(tls.client_key), "-h", "localhost", "-p", str(redis.port),
                                      "CLIENT", "LIST"], capture_output=True, text=True, timeout=10)
            assert clients.returncode == 0 and clients.stdout.count("cmd=") >= 3, clients  # the services' and ours
            # Every session of the stack's user is TLS (the user requires X509): count them from inside
            with sqlalchemy.create_engine(mariadb.url()).connect() as conn:
                sessions = conn.exec_driver_sql("SELECT count(*) FROM information_schema.processlist "
                                                "WHERE user = 'root' AND db = 'stratus'").scalar()
                cipher = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").one()[1]
            assert sessions >= 2 and cipher, (sessions, cipher)  # this query's own session and the services'
        finally:
            stack.stop()
    finally:
        mariadb.close()
        redis.close()
