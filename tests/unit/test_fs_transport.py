"""tasks/messaging/fs_transport.py: binding to a fanout exchange whose table file another worker has just created (still
empty) works, as do concurrent binds from several processes; upstream raised JSONDecodeError at worker start.
A worker told to stop ends its wait for a message at once."""
from __future__ import annotations

import multiprocessing
import socket
import time

import pytest
from kombu import Connection, Exchange, Queue


def _connection(folder) -> Connection:
    for sub in ("queue", "control"):
        (folder / sub).mkdir(exist_ok=True)
    return Connection(transport="tasks.messaging.fs_transport:Transport", transport_options={
        "data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"), "store_processed": False})


def _bind(folder, queue: str) -> None:
    with _connection(folder) as conn:
        conn.default_channel._queue_bind("pidbox.fanout", "", "", queue)


def test_binding_to_a_table_file_another_worker_just_created(tmp_path):
    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        (tmp_path / "control" / "pidbox.fanout.exchange").write_bytes(b"")  # created, not written yet
        assert channel.get_table("pidbox.fanout") == []
        channel._queue_bind("pidbox.fanout", "", "", "compute-1.pidbox")
        assert [q.queue for q in channel.get_table("pidbox.fanout")] == ["compute-1.pidbox"]


def test_concurrent_binds_keep_every_queue(tmp_path):
    names = [f"worker-{i}.pidbox" for i in range(12)]
    procs = [multiprocessing.Process(target=_bind, args=(tmp_path, name)) for name in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    with _connection(tmp_path) as conn:
        assert sorted(q.queue for q in conn.default_channel.get_table("pidbox.fanout")) == sorted(names)


def _waited_for_nothing(conn: Connection, timeout: float) -> float:
    queue = Queue("idle", Exchange("idle"), "idle")
    with conn.Consumer(queue, callbacks=[lambda body, message: None]):
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=timeout)
        return time.monotonic() - started


def test_waits_its_timeout_for_a_message_but_not_once_the_worker_must_stop(tmp_path, monkeypatch):
    from celery.worker import state
    with _connection(tmp_path) as conn:
        assert _waited_for_nothing(conn, 0.5) >= 0.5
        monkeypatch.setattr(state, "should_stop", 0)  # what SIGTERM sets: exit code 0
        assert _waited_for_nothing(conn, 2.0) < 0.5
        monkeypatch.setattr(state, "should_stop", False)  # Celery's "no" too
        assert _waited_for_nothing(conn, 0.5) >= 0.5
