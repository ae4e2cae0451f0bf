"""The secret key is created once, race-free, by the first of many concurrent callers (threads of one API worker,
or several processes), readable by its owner only; every caller encrypts with the same key."""
from __future__ import annotations

import multiprocessing
import stat
import threading

import pytest

from core import crypto
from core.settings import get_settings


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATUS_SECRET_KEY_FILE", str(tmp_path / "keys" / "secret.key"))
    get_settings.cache_clear()
    crypto._fernet.cache_clear()
    yield tmp_path / "keys" / "secret.key"
    get_settings.cache_clear()
    crypto._fernet.cache_clear()


@pytest.mark.parametrize("round_", range(5))
def test_threads_racing_for_the_first_key_all_succeed(key_file, round_):
    start, results, errors = threading.Barrier(16), [], []

    def first_secret() -> None:
        start.wait()
        try:
            results.append(crypto.encrypt("s3cret"))
        except Exception as exc:  # the bug: a thread's temporary file deleted by another thread
            errors.append(exc)

    threads = [threading.Thread(target=first_secret) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {crypto.decrypt(token) for token in results} == {"s3cret"}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"], "a temporary file was left behind"


def _encrypt_in_child(queue) -> None:
    crypto._fernet.cache_clear()
    queue.put(crypto.encrypt("from a child"))


def test_processes_racing_for_the_first_key_agree_on_it(key_file):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_encrypt_in_child, args=(queue,)) for _ in range(6)]
    for child in children:
        child.start()
    tokens = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    assert {crypto.decrypt(token) for token in tokens} == {"from a child"}  # one key for all of them
