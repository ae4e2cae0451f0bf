"""The file:// result backend replaces result files atomically."""
from __future__ import annotations

import os

from celery import Celery

from tasks.fs_result_backend import AtomicFilesystemBackend


def test_reader_of_the_old_result_is_not_mixed_with_the_new(tmp_path):
    backend = AtomicFilesystemBackend(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
    backend.set(b"task-1", b"S" * 180)  # e.g. the STARTED state
    path = os.path.join(tmp_path, "task-1")
    with open(path, "rb") as reader:  # a client polling right now
        backend.set(b"task-1", b"R" * 250)  # the worker stores the result
        assert reader.read() == b"S" * 180  # in-place rewriting would give the new bytes here
    assert backend.get(b"task-1") == b"R" * 250
    assert os.listdir(tmp_path) == ["task-1"]  # no temporary files left
