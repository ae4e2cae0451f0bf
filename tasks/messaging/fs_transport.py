"""kombu's filesystem transport with atomic message files.

Upstream writes a message file in place under a lock that readers do not take, so a consumer can pick up a
half-written file and lose the message (JSONDecodeError in _get). Here each message is written to a hidden
temporary name and renamed into place, which is atomic on POSIX: readers see whole messages or none.

Binding a queue to a fanout exchange (each worker's remote-control queue, at start) creates the exchange's table
file before locking it, so a worker starting at the same moment could lock and read the still empty file and die
on a JSONDecodeError (seen once: a compute worker exited at start). Here the file is opened without truncation,
locked, then read; an empty file is an empty table.

A worker asked to stop (SIGTERM, Ctrl-C) stops within a poll: Celery's loop for a polled transport checks for
shutdown only between its 2-second waits for a message, which each shutdown phase sat out in full (a solo
worker took 4.7 s to exit, a Redis one under 1.5 s).
"""
from __future__ import annotations

import os
import socket
import uuid
from time import monotonic, sleep

from celery.worker import state as worker_state
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: "partition('.')" in _get never matches "<queue>.msg" for temporary files.
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(tmp, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.rename(tmp, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f_obj:
                filesystem.lock(f_obj, filesystem.LOCK_SH)
                return [filesystem.exchange_queue_t(*q) for q in _table(f_obj.read())]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            with file.open("a+b", buffering=0) as f_obj:  # created if missing, never truncated unlocked
                filesystem.lock(f_obj, filesystem.LOCK_EX)
                f_obj.seek(0)
                queues = [filesystem.exchange_queue_t(*q) for q in _table(f_obj.read())]
                if entry not in queues:
                    queues.insert(0, entry)
                    f_obj.truncate(0)
                    f_obj.write(str_to_bytes(dumps(queues)))
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc


def _stopping() -> bool:
    """Celery's own test (``state.maybe_shutdown``) for a worker told to stop or terminate."""
    return any(flag is not None and flag is not False
               for flag in (worker_state.should_stop, worker_state.should_terminate))


def _table(raw: bytes) -> list:
    return loads(bytes_to_str(raw)) if raw.strip() else []


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection, timeout=None):
        """kombu's polling loop, which also gives up its wait once this worker has been told to stop."""
        started, get = monotonic(), self.cycle.get
        interval = min(self.polling_interval or 0, timeout) if timeout else self.polling_interval
        while True:
            try:
                return get(self._deliver, timeout=timeout)
            except filesystem.Empty:
                if _stopping():
                    raise socket.timeout() from None
                if timeout is not None and monotonic() - started >= timeout:
                    raise socket.timeout() from None
                if interval:
                    sleep(interval)
