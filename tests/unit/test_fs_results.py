"""The embedded result backend never shows a reader a half-written result (the API polls while workers write)."""
from __future__ import annotations

import os
import threading

from celery import Celery

from tasks.messaging.fs_results import AtomicFilesystemBackend


def test_readers_see_whole_values_only(tmp_path):
    backend = AtomicFilesystemBackend(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
    values = [bytes([65 + i]) * 300_000 for i in range(2)]  # several pages: an in-place write is not atomic
    backend.set(b"key", values[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(backend.get(b"key"))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        backend.set(b"key", values[i % 2])
    stop.set()
    reader.join()
    assert seen <= set(values), {len(v or b"") for v in seen}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # no temporary files left behind


def test_reader_of_the_old_result_is_not_mixed_with_the_new(tmp_path):
    backend = AtomicFilesystemBackend(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
    backend.set(b"task-1", b"S" * 180)  # e.g. the STARTED state
    path = os.path.join(tmp_path, "task-1")
    with open(path, "rb") as reader:  # a client polling right now
        backend.set(b"task-1", b"R" * 250)  # the worker stores the result
        assert reader.read() == b"S" * 180  # in-place rewriting would give the new bytes here
    assert backend.get(b"task-1") == b"R" * 250
    assert os.listdir(tmp_path) == ["task-1"]  # no temporary files left
