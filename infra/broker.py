"""The broker transport (``CELERY_BROKER_TRANSPORT``): kombu's Redis transport, which in a
worker puts its messages back after a Redis restart instead of losing them.

kombu's Redis transport pops a message off its queue (BRPOP), then records it in Redis's
``unacked`` hash until it is acknowledged. When the connection drops, the worker forgets the
messages it had not started and puts back every message it holds. With kombu's clients, which
give up at once, both the recording of a message that arrived just before the restart and the
putting back fail while Redis is down: those messages came back only after the visibility
timeout, or never. Here both wait for Redis to answer again (about TECHNIC_REDIS_OUTAGE_SECONDS,
``redis_client.ride_out_outages``), so the messages are queued again as soon as it does.
Acknowledging still fails at once (Celery logs it; the message is then put back with the others
and runs again, which every task allows), so the consumer notices the outage without delay, and
a task that finishes after the reconnection is not acknowledged through the closed channel.
Outside a worker the transport is kombu's own, but for that last guard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

from infra.redis_client import outage_retry_in_force


class QoS(kombu_redis.QoS):
    _waiting = False

    def append(self, message: Any, delivery_tag: str) -> None:
        with self._waiting_for_redis():
            super().append(message, delivery_tag)

    def restore_unacked(self, client: Any = None) -> Any:
        with self._waiting_for_redis():
            return super().restore_unacked(client)

    # A task that outlived its channel (the connection dropped while it ran, and the consumer
    # reconnected on a new one) cannot be acknowledged through it: kombu would crash the
    # worker. Its message was put back when the channel closed (or comes back after the
    # visibility timeout) and runs again.
    def ack(self, delivery_tag: str) -> None:
        if not self.channel.closed:
            super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not self.channel.closed:
            super().reject(delivery_tag, requeue=requeue)

    @contextmanager
    def _waiting_for_redis(self) -> Iterator[None]:
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


class Channel(kombu_redis.Channel):
    QoS = QoS
    _patient_params: dict[str, Any] | None = None
    _patient_pool: redis.ConnectionPool | None = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        qos = self._qos
        if client is None and isinstance(qos, QoS) and qos._waiting:
            client = self.patient_client()
        with super().conn_or_acquire(client) as acquired:
            yield acquired

    def patient_client(self) -> redis.Redis | None:
        """A client that waits out an outage, in a worker (None elsewhere: kombu's own)."""
        if self._patient_params is None:
            return None
        if self._patient_pool is None:
            self._patient_pool = redis.ConnectionPool(**self._patient_params)
        client: redis.Redis = self.Client(connection_pool=self._patient_pool)
        return client

    def _get_pool(self, asynchronous: bool = False) -> Any:
        # The parameters are read now, while the connection is up: when the channel closes
        # after an outage, kombu may already have detached what they are read from.
        retry = outage_retry_in_force()
        if retry is not None and not asynchronous and self._patient_params is None:
            self._patient_params = {**self._connparams(), "retry": retry}
        return super()._get_pool(asynchronous=asynchronous)

    def _disconnect_pools(self) -> None:
        super()._disconnect_pools()
        pool, self._patient_pool = self._patient_pool, None
        if pool is not None:
            pool.disconnect()


class Transport(kombu_redis.Transport):
    Channel = Channel
