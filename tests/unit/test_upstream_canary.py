"""Canary for the Celery and kombu internals Stratus patches or copies.

``tasks/messaging/kombu_fixes.py`` wraps kombu's and Celery's private methods, ``tasks/common.Chain`` publishes a
chain the way ``celery.chain`` does and relies on the worker's tracer to follow it, and the other modules of
``tasks/messaging/`` subclass or replace private parts of the filesystem transport, the result backends and kombu's
JSON. None of that is an API: an upgrade may change it silently. So the versions are pinned with ``==`` in
requirements.txt, and this test fails when the installed versions are not the pinned ones or when the source of
an upstream function that Stratus replaces, wraps or copies is not the one recorded here, naming what to re-check.

After an upgrade: read each reported function's new source against what its entry says Stratus relies on, adapt
the Stratus side if needed (and its tests: tests/unit/test_kombu_fixes.py, test_fs_transport.py, test_fs_results.py,
test_rpc_results.py, test_fast_json.py, tests/functional/test_outages.py), then record the new digests printed by
``.venv/bin/python -m tests.unit.test_upstream_canary``.

Sources are read from the installed files (ast), not from the imported objects, which the fixes have replaced.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import NamedTuple

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"

# Packages whose internals are relied upon below (redis: _reuse_sync_client shares one redis-py client across
# threads and compares its connection_pool; the fixes catch redis-py's ConnectionError and TimeoutError).
PINNED_PACKAGES = ("celery", "kombu", "redis")


class Upstream(NamedTuple):
    where: str  # "module:Qualified.name"; a function nested in another one as "outer.<locals>.inner"
    digest: str  # the first 16 hex digits of the SHA-256 of its source
    relied_on: str  # what Stratus relies on (the thing to re-check when the digest changes)


KOMBU_FIXES = (
    # _skip_declared_quickly
    Upstream("kombu.messaging:Producer.maybe_declare", "48a1370df94d029e",
             "looks kombu.messaging's module-global maybe_declare up at each call (the name the fix replaces) and "
             "passes (entity, channel, retry, **retry_policy)"),
    Upstream("kombu.messaging:Producer._publish", "4709062e9da7194e",
             "declares each entity of `declare` through self.maybe_declare with retry and the publish's policy"),
    Upstream("kombu.common:maybe_declare", "818206790a19ea9d",
             "the wrapped function: with retry it enters the retry machinery (_imaybe_declare) before the cache"),
    Upstream("kombu.common:_maybe_declare", "f4ae33d277158f68",
             "the cache the fix reads first: an entity that can_cache_declaration and whose hash is in "
             "channel.connection.client.declared_entities is not declared again (returns False)"),
    Upstream("kombu.common:_imaybe_declare", "4cf3fae840ba832c",
             "the connection-retry wrapper the fast path skips for an already declared entity"),
    Upstream("kombu.connection:Connection._connection_factory", "8e665bf4cae04bca",
             "a reconnection clears declared_entities, so queues are declared again after one"),
    # _reuse_sync_client
    Upstream("kombu.transport.redis:Channel._create_client", "38ea1faeedc0a624",
             "the wrapped method: (self, asynchronous=False); asynchronous=True is the BRPOP client kombu keeps "
             "itself, asynchronous=False a new client on self.pool for each publish, ack and unacked update"),
    Upstream("kombu.transport.redis:Channel.pool", "3db33f7376fba853",
             "the sync pool (self._pool), replaced on a reconnection: a kept client must still be on it"),
    Upstream("kombu.transport.redis:Channel.conn_or_acquire", "4015b30bac79802e",
             "acquires a sync client through _create_client (the kept one); requeue() uses it"),
    Upstream("kombu.transport.redis:Channel.client", "3b1f900b6af8a888",
             "the BRPOP client is made with asynchronous=True and never shared"),
    # _reconnect_promptly
    Upstream("celery.worker.consumer.consumer:Consumer.ensure_connected", "28f71a3c50cea165",
             "the wrapped method calls conn.ensure_connection(...) without interval arguments, so the fix binds "
             "interval_start/step/max on the connection instance for the call"),
    Upstream("kombu.connection:Connection.ensure_connection", "9a332310d9f2cbae",
             "passes its keyword arguments on to _ensure_connection"),
    Upstream("kombu.connection:Connection._ensure_connection", "6065e2d82be4b76e",
             "takes interval_start, interval_step and interval_max (defaults 2, 2, 30 s: the slow steps the fix "
             "replaces)"),
    # _restore_unacked_quietly, _ack_on_closed_channel_quietly
    Upstream("kombu.transport.redis:QoS.restore_unacked", "59d8ae8f254a05ec",
             "the wrapped method: puts self._delivered back through the channel's connection, raising when it is "
             "gone; the fix clears self._delivered instead (the visibility timeout redelivers)"),
    Upstream("kombu.transport.redis:QoS.ack", "4b663d5a0b554127",
             "the wrapped method: removes the tag from the unacked indices, raising on a closed channel"),
    Upstream("kombu.transport.redis:QoS.reject", "96c5c44ffffb369b",
             "the wrapped method: like ack (requeue=False) or restore_by_tag"),
    Upstream("kombu.transport.virtual.base:QoS.ack", "1467f5999364f592",
             "marks a delivery tag done in this worker's bookkeeping only, without the broker (the fix's `forget` "
             "on a dead channel)"),
    Upstream("kombu.transport.virtual.base:QoS.__init__", "e9f47a60ca9c63a1",
             "_delivered holds the tags this worker has (cleared by the restore_unacked fix); _quick_ack, which "
             "ack calls, only adds the tag to the local _dirty set"),
    # _requeue_unregistered and requeue()
    Upstream("kombu.transport.redis:Channel._brpop_read", "c2e423dfeda85f81",
             "pops a message (BRPOP) and only then delivers it, which registers it as unacked (QoS.append): the "
             "window the fix covers"),
    Upstream("kombu.transport.redis:QoS.append", "6883fd4024f51ad8",
             "the wrapped method: registers the message (zadd + hset) and raises the redis error before "
             "super().append when the broker is gone; message._raw and delivery_info exchange/routing_key are what "
             "it stores and requeue() puts back"),
    Upstream("kombu.transport.virtual.base:Message.__init__", "117c34027c7f3eec",
             "keeps the raw payload as message._raw"),
    Upstream("kombu.transport.redis:Channel._do_restore_message", "8768fe76b29de024",
             "requeue() calls it with (payload, exchange, routing_key, pipe): the message goes back on the queues "
             "the exchange and routing key lead to, marked redelivered"),
)

HAND_BUILT_CHAIN = (
    # tasks/common.Chain sends the first step with Celery's `chain` field; the worker's tracer sends the next.
    Upstream("celery.app.base:Celery.send_task", "ebff3ef3504b097f",
             "takes chain= and ignore_result= and hands chain to create_task_message; with ignore_result it does "
             "not call the result backend's on_task_call (no result subscription per step)"),
    Upstream("celery.app.amqp:AMQP.as_task_v2", "7c5260c10ab40b50",
             "puts chain into the message body's embed, where the worker's request reads it"),
    Upstream("celery.app.trace:build_tracer.<locals>.trace_task", "26de4c483bed9447",
             "after a step succeeds, dispatches task_request.chain (with the step's return value)"),
    Upstream("celery.app.trace:build_tracer.<locals>._dispatch_callbacks_and_chain", "ed90674a815820f3",
             "sends chain[-1] with the return value as its only argument and chain=chain[:-1], parent_id and "
             "root_id: the entries are read last-first, the order Chain writes"),
    Upstream("celery.canvas:maybe_signature", "c8674b362a3cd75e",
             "the tracer turns each chain entry, a plain dict, into a Signature"),
    Upstream("celery.canvas:Signature.from_dict", "7abc51e09b31cffc",
             "a dict without subtask_type becomes a plain Signature"),
    Upstream("celery.canvas:Signature.__init__", "3a534823d6bfd460",
             "the dict form Chain stores (_link_template): task, args, kwargs, options (ignore_result), "
             "subtask_type, immutable"),
    Upstream("celery.canvas:Signature.apply_async", "28b0bb37129f6589",
             "prepends the result to args and calls the task's apply_async with the merged options (chain, "
             "parent_id, root_id): StratusTask.apply_async then sets argsrepr"),
    Upstream("celery.app.task:Task.apply_async", "1002865a9321e149",
             "what StratusTask.apply_async calls after adding argsrepr/kwargsrepr to the options"),
    Upstream("celery.canvas:_chain.run", "bc1e3c29fbb11ee5",
             "what celery.chain publishes and Chain copies: the first step's message with chain= the other steps"),
    Upstream("celery.canvas:_chain.prepare_steps", "afb7784810afdfbe",
             "the order of celery.chain's steps in that field (last-first)"),
    Upstream("celery.canvas:_prepare_chain_from_options", "2eff3d1975a1a6e6",
             "the `chain` option celery.chain sets on its first step's message"),
)

OTHER_MESSAGING = (
    # tasks/messaging/fs_transport.py
    Upstream("kombu.transport.filesystem:Channel._put", "482499ac7b103cc9",
             "replaced (atomic rename); the file name <time>_<uuid>.<queue>.msg is what _get looks for"),
    Upstream("kombu.transport.filesystem:Channel._get", "630588cdbac12a69",
             "takes files whose name after the first dot is <queue>.msg, so '.<name>.tmp' files are never read"),
    Upstream("kombu.transport.filesystem:Channel.get_table", "d7b1ba40a9f51a1e",
             "replaced (an empty table file is an empty table); exchange_queue_t rows as JSON lists"),
    Upstream("kombu.transport.filesystem:Channel._queue_bind", "610c18d901e85e3d",
             "replaced (no truncation before the lock); the table's format"),
    Upstream("kombu.transport.filesystem:Channel._exchange_file", "b8cce4dabd8e61ef",
             "the table file of an exchange, under control_folder"),
    Upstream("kombu.transport.virtual.base:Transport.drain_events", "ac8241645cf286a2",
             "the polling loop fs_transport.Transport.drain_events copies (and leaves when the worker stops)"),
    Upstream("celery.worker.state:maybe_shutdown", "2cf835161a58ecfa",
             "the test of should_stop / should_terminate that fs_transport._stopping copies"),
    # tasks/messaging/fs_results.py
    Upstream("celery.backends.filesystem:FilesystemBackend.set", "f1a4c428af3e9a7f",
             "replaced (temporary file and rename)"),
    Upstream("celery.backends.filesystem:FilesystemBackend._filename", "5fa0c697c74541fa",
             "a key's file name (bytes, self.sep-separated) that the replacement writes"),
    # tasks/messaging/rpc_results.py
    Upstream("celery.backends.rpc:ResultConsumer._reconnect", "d7e02ff913bf2bf8",
             "wrapped: on failure the consumer's _connection and _consumer are dropped"),
    Upstream("celery.backends.rpc:ResultConsumer.start", "c5a732f1f5ba5396",
             "sets _connection and _consumer, which a later call starts afresh when they are None"),
    Upstream("celery.backends.rpc:RPCBackend.on_task_call", "5e347e3a5958c27a",
             "replaced: declares the reply queue with the caller's retry policy instead of retrying forever"),
    # tasks/messaging/fast_json.py
    Upstream("kombu.utils.json:dumps", "6f1e68590bfda110", "replaced: its output and its special types"),
    Upstream("kombu.utils.json:loads", "137b3f07f0d880d4", "replaced: what it reads and its object_hook"),
    Upstream("kombu.utils.json:JSONEncoder.default", "baa5ed19f67413d4",
             "used by fast_json for the types orjson passes through (datetime, Decimal, bytes ...)"),
    Upstream("kombu.utils.json:object_hook", "cf29125995c05973",
             "the {'__type__', '__value__'} envelope fast_json leaves to kombu's decoder"),
)

ALL = KOMBU_FIXES + HAND_BUILT_CHAIN + OTHER_MESSAGING


def _pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if found:
            pins[found.group(1).lower()] = found.group(2)
    return pins


def _definitions(body: list[ast.stmt], name: str) -> list[ast.AST]:
    return [node for node in body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name == name]


def source_of(module_source: str, qualname: str) -> str | None:
    """The source text of ``qualname`` (``Class.method``, ``outer.<locals>.inner``) in a module's source, or None;
    a name defined twice in its scope (a property's getter and setter) gives both definitions."""
    tree = ast.parse(module_source)
    scope: list[ast.stmt] = tree.body
    parts = [p for p in qualname.split(".") if p != "<locals>"]
    for i, part in enumerate(parts):
        found = _definitions(scope, part)
        if not found:
            return None
        if i == len(parts) - 1:
            return "\n".join(ast.get_source_segment(module_source, node) or "" for node in found)
        scope = found[0].body
    return None


def digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def current_digest(where: str) -> str | None:
    module, qualname = where.split(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    source = source_of(Path(spec.origin).read_text(), qualname)
    return None if source is None else digest(source)


def test_the_pinned_versions_are_installed():
    pins = _pins()
    wrong = [f"{name}: requirements.txt pins {pins.get(name)!r}, installed {importlib.metadata.version(name)}"
             for name in PINNED_PACKAGES if pins.get(name) != importlib.metadata.version(name)]
    assert not wrong, ("Celery/kombu/redis internals are patched and copied by tasks/messaging/ and "
                       "tasks/common.Chain; re-check every entry of this module before changing the pins:\n"
                       + "\n".join(wrong))


def test_the_patched_and_copied_upstream_code_is_unchanged():
    changed = []
    for entry in ALL:
        now = current_digest(entry.where)
        if now != entry.digest:
            state = "is gone" if now is None else f"changed ({entry.digest} -> {now})"
            changed.append(f"{entry.where} {state}; Stratus relies on this: {entry.relied_on}")
    assert not changed, "Upstream code Stratus patches or copies changed:\n" + "\n".join(changed)


def test_the_canary_tells_sources_apart():
    module = "class A:\n    @property\n    def p(self):\n        return 1\n\n    @p.setter\n    def p(self, v):\n" \
             "        pass\n\n\ndef outer():\n    def inner():\n        return 2\n    return inner\n"
    assert source_of(module, "A.p").count("def p") == 2
    assert source_of(module, "outer.<locals>.inner") == "def inner():\n        return 2"
    assert source_of(module, "A.missing") is None and source_of(module, "missing") is None
    assert digest(source_of(module, "outer.<locals>.inner")) != digest(source_of(module.replace("2", "3"),
                                                                                 "outer.<locals>.inner"))


if __name__ == "__main__":  # prints the digests of the installed versions, to record after a re-check
    for entry in ALL:
        print(f"{current_digest(entry.where)}  {entry.where}")
