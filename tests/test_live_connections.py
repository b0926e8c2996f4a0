"""The cap on live progress connections per user (WebSocket and SSE together), counted in a real
redis-server, through the real ASGI application."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from infra.redis_client import main_redis
from live import connections
from scanner.models import Scan
from technic_project.asgi import application
from tests.support.accounts import run, user_with_token
from tests.support.processes import RedisServer
from tests.support.streams import EventStream, token_header

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

TIMEOUT = 10
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def no_leases_yet(redis_server: RedisServer, settings: Any) -> Iterator[None]:
    """Users' ids repeat from one test to the next (the database is emptied between them)."""
    client = redis_server.client()
    pattern = f"{settings.TECHNIC_KEY_PREFIX}:live:*"
    client.delete(*client.keys(pattern) or ["-"])
    yield
    client.delete(*client.keys(pattern) or ["-"])


def socket(scan: Scan, token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/scan/ws/{scan.id}?token={token}", headers=[ORIGIN])


async def watching(scan: Scan, token: str) -> WebsocketCommunicator:
    """A connected socket that got its first snapshot."""
    ws = socket(scan, token)
    assert (await ws.connect(TIMEOUT))[0]
    assert (await ws.receive_json_from(TIMEOUT))["scan_id"] == str(scan.id)
    return ws


def test_a_websocket_over_the_limit_is_closed_with_4429_and_a_freed_place_is_taken_again(
    owner: tuple[User, str], scan: Scan, settings: Any
) -> None:
    settings.TECHNIC_MAX_LIVE_CONNECTIONS = 2

    async def scenario() -> None:
        first, second = await watching(scan, owner[1]), await watching(scan, owner[1])
        third = socket(scan, owner[1])
        assert (await third.connect(TIMEOUT))[0]
        closed = await third.receive_output(TIMEOUT)
        assert (closed["type"], closed["code"]) == ("websocket.close", connections.CLOSE_TOO_MANY)
        await third.disconnect()
        await first.disconnect()
        again = await watching(scan, owner[1])
        for ws in (second, again):
            await ws.disconnect()

    run(scenario)
    assert connections.live_count(owner[0].pk) == 0


def test_an_event_stream_over_the_limit_answers_429_and_other_users_are_not_counted(
    owner: tuple[User, str], scan: Scan, settings: Any
) -> None:
    settings.TECHNIC_MAX_LIVE_CONNECTIONS = 2
    other, other_token = user_with_token("other")
    other_scan = Scan.objects.create(owner=other, config={}, data_provider="demo")

    async def scenario() -> None:
        ws = await watching(scan, owner[1])
        stream = EventStream(f"/scan/sse/{scan.id}", token_header(owner[1]))
        refused = EventStream(f"/scan/sse/{scan.id}", token_header(owner[1]))
        theirs = EventStream(f"/scan/sse/{other_scan.id}", token_header(other_token))
        try:
            assert (await stream.open())[0] == 200
            assert (await stream.event())["scan_id"] == str(scan.id)
            status, headers = await refused.open()
            assert (status, headers.get("retry-after")) == (429, str(connections.RETRY_AFTER_SECONDS))
            error = json.loads(await refused.body())["error"]
            assert (error["code"], error["details"]) == ("TOO_MANY_CONNECTIONS", {"limit": 2})
            assert error["suggestions"]
            assert (await theirs.open())[0] == 200
            assert (await theirs.event())["scan_id"] == str(other_scan.id)
        finally:
            for opened in (theirs, refused, stream):
                await opened.disconnect()
            await ws.disconnect()

    run(scenario)
    assert connections.live_count(owner[0].pk) == connections.live_count(other.pk) == 0


def test_the_leases_of_a_process_that_died_lapse(settings: Any) -> None:
    settings.TECHNIC_MAX_LIVE_CONNECTIONS = 2
    assert connections.live_acquire(7) and connections.live_acquire(7)
    assert connections.live_acquire(7) is None
    client, key = main_redis(), connections._key(7)
    leases: list[bytes] = client.zrange(key, 0, -1)  # type: ignore[assignment]
    client.zadd(key, dict.fromkeys(leases, time.time() - 1))  # nobody renewed them
    assert connections.live_acquire(7) is not None
    assert connections.live_count(7) == 1


def test_a_renewed_lease_stays_counted(settings: Any) -> None:
    settings.TECHNIC_MAX_LIVE_CONNECTIONS = 1
    lease = connections.live_acquire(8)
    assert lease is not None
    client, key = main_redis(), connections._key(8)
    client.zadd(key, {lease.id: time.time() - 1})  # it would have lapsed
    connections.live_renew(lease)
    assert connections.live_acquire(8) is None
    expires = client.zscore(key, lease.id)
    assert expires is not None and expires > time.time() + connections.LEASE_SECONDS - 5
    connections.live_release(lease)
    assert connections.live_acquire(8) is not None


def test_concurrent_connections_never_take_more_places_than_the_limit(settings: Any) -> None:
    settings.TECHNIC_MAX_LIVE_CONNECTIONS = 5
    taken: list[Any] = []
    barrier = threading.Barrier(20)

    def connect() -> None:
        barrier.wait()
        taken.append(connections.live_acquire(9))

    threads = [threading.Thread(target=connect) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len([lease for lease in taken if lease is not None]) == 5
    assert connections.live_count(9) == 5
