"""Celery's ``rpc://`` result backend (the RabbitMQ deployments' one) made to ride out a broker restart.

Two faults of the stock backend, seen when RabbitMQ stops while the API waits for conductor replies:
- Before each send it declares the caller's reply queue retrying *forever*, so every API request hung for the
  whole outage instead of answering 503. Here the declaration follows the caller's retry policy
  (``result_backend_transport_options["retry_policy"]``: the API's short one, tasks/messaging/rpc.py).
- When the reply consumer's connection drops and reconnecting fails (the broker is still down), it keeps the
  dead consumer; once a later drain connects again, that connection has no consumer on it and every reply is
  missed until the process restarts. Here a failed reconnection forgets the consumer, so the next call starts a
  fresh one (which also declares the reply queue again: a restarted node may have lost it).
"""
from __future__ import annotations

import logging

from celery._state import task_join_will_block
from celery.backends import rpc
from kombu.common import maybe_declare

LOG = logging.getLogger(__name__)


class ResultConsumer(rpc.ResultConsumer):
    def _reconnect(self) -> None:
        try:
            super()._reconnect()
        except BaseException:
            self._forget_connection()
            raise

    def _forget_connection(self) -> None:
        connection, self._connection, self._consumer = self._connection, None, None
        if connection is not None:
            try:
                connection.collect()  # drop sockets and channels without talking to the broker
            except Exception:
                LOG.debug("discarding the result consumer's connection failed", exc_info=True)


class RPCBackend(rpc.RPCBackend):
    ResultConsumer = ResultConsumer

    def on_task_call(self, producer, task_id) -> None:
        if not task_join_will_block():
            policy = (self.app.conf.result_backend_transport_options or {}).get("retry_policy") \
                or self.retry_policy
            maybe_declare(self.binding(producer.channel), retry=True, **policy)
