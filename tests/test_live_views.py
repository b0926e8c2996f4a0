"""Progress over HTTP against a real redis-server: the REST snapshot, and the SSE stream through
the real ASGI application (read incrementally, as a client would)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from live import views
from progress import store
from scanner.models import Scan
from tests.support.accounts import handcrafted_push, run, user_with_token
from tests.support.processes import RedisServer
from tests.support.streams import EventStream, token_header

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

TIMEOUT = 10  # seconds any expected output may take on a loaded machine
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


def session_cookie(user: User) -> str:
    browser = Client()
    browser.force_login(user)
    return f"sessionid={browser.cookies['sessionid'].value}"


# --- REST: GET /scan/progress/<id> -----------------------------------------------------------


def test_the_owner_gets_the_live_snapshot_with_a_token(owner: tuple[User, str], scan: Scan) -> None:
    started = store.stage_started(scan.id, "universe_loading", 1)
    assert started is not None
    response = Client().get(f"/scan/progress/{scan.id}", HTTP_AUTHORIZATION=f"Token {owner[1]}")
    assert response.status_code == 200
    body = response.json()
    assert (body["scan_id"], body["seq"], body["status"]) == (str(scan.id), started["seq"], "running")
    assert body["current_stage"] == "universe_loading"


def test_the_owner_gets_the_snapshot_with_a_session(owner: tuple[User, str], scan: Scan) -> None:
    browser = Client()
    browser.force_login(owner[0])
    response = browser.get(f"/scan/progress/{scan.id}")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["seq"]) == ("pending", 0)


@pytest.mark.parametrize("authorization", [None, "Token not-a-token"])
def test_no_or_a_bad_token_answers_401_not_authenticated(scan: Scan, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = Client().get(f"/scan/progress/{scan.id}", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    error = response.json()["error"]
    assert error["code"] == "NOT_AUTHENTICATED"
    assert error["message"] and error["suggestions"]


@pytest.mark.parametrize("whose", ["someone else's", "unknown"])
def test_a_scan_that_is_not_the_callers_answers_404_even_for_staff(scan: Scan, whose: str) -> None:
    _, staff_token = user_with_token("staff", is_staff=True, is_superuser=True)
    scan_id = str(scan.id) if whose == "someone else's" else UNKNOWN_ID
    response = Client().get(f"/scan/progress/{scan_id}", HTTP_AUTHORIZATION=f"Token {staff_token}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "SCAN_NOT_FOUND"
    assert error["details"] == {"scan_id": scan_id}
    assert error["suggestions"]


# --- SSE: GET /scan/sse/<id>, /scan/stream/<id> ---------------------------------------------


@pytest.mark.parametrize("route", ["sse", "stream"])
def test_the_stream_sends_retry_the_snapshot_each_change_and_ends_after_the_terminal_event(
    owner: tuple[User, str], scan: Scan, route: str
) -> None:
    async def scenario() -> None:
        stream = EventStream(f"/scan/{route}/{scan.id}?token={owner[1]}")
        status, headers = await stream.open()
        assert status == 200
        assert headers["content-type"] == "text/event-stream"
        assert (headers["cache-control"], headers["x-accel-buffering"]) == ("no-cache", "no")
        assert await stream.block() == "retry: 2000"
        first = await stream.event()
        assert (first["id"], first["event"], first["type"], first["status"]) == (0, "progress", "progress", "pending")

        begun = store.stage_started(scan.id, "universe_loading", 1)
        final = store.finished(scan.id, "completed", "done")
        assert begun is not None and final is not None
        assert (await stream.event())["id"] == begun["seq"]
        last = await stream.event()
        assert (last["id"], last["event"], last["type"], last["status"]) == (
            final["seq"],
            "terminal",
            "terminal",
            "completed",
        )
        assert await stream.body() == b""
        await stream.app.wait(TIMEOUT)

    run(scenario)


@pytest.mark.parametrize("how", ["header", "session"])
def test_the_stream_accepts_a_token_header_or_a_session(owner: tuple[User, str], scan: Scan, how: str) -> None:
    headers = token_header(owner[1]) if how == "header" else [(b"cookie", session_cookie(owner[0]).encode())]

    async def scenario() -> None:
        stream = EventStream(f"/scan/sse/{scan.id}", headers)
        assert (await stream.open())[0] == 200
        assert (await stream.event())["scan_id"] == str(scan.id)
        await stream.disconnect()

    run(scenario)


async def refused(path: str) -> tuple[int, dict[str, Any]]:
    """Status and error of a request answered before streaming."""
    stream = EventStream(path)
    status, headers = await stream.open()
    assert headers["content-type"] == "application/json"
    error = json.loads(await stream.body())["error"]
    await stream.app.wait(TIMEOUT)
    return status, error


@pytest.mark.parametrize("query", ["", "?token=not-a-token"])
def test_the_stream_answers_401_as_json_without_a_valid_token_or_session(scan: Scan, query: str) -> None:
    async def scenario() -> None:
        status, error = await refused(f"/scan/sse/{scan.id}{query}")
        assert (status, error["code"]) == (401, "NOT_AUTHENTICATED")

    run(scenario)


def test_the_stream_answers_404_as_json_for_another_users_scan(scan: Scan) -> None:
    _, staff_token = user_with_token("staff", is_staff=True)

    async def scenario() -> None:
        status, error = await refused(f"/scan/sse/{scan.id}?token={staff_token}")
        assert (status, error["code"], error["details"]) == (404, "SCAN_NOT_FOUND", {"scan_id": str(scan.id)})

    run(scenario)


def test_a_client_resuming_up_to_date_gets_no_resend_only_newer_events(owner: tuple[User, str], scan: Scan) -> None:
    begun = store.stage_started(scan.id, "universe_loading", 1)
    assert begun is not None

    async def scenario() -> None:
        stream = EventStream(
            f"/scan/sse/{scan.id}", [*token_header(owner[1]), (b"last-event-id", b"%d" % begun["seq"])]
        )
        await stream.open()
        # The stream reads the snapshot before it writes retry:, so this update is newer than it.
        assert await stream.block() == "retry: 2000"
        started = store.stage_started(scan.id, "universe_loading", 1)
        assert started is not None
        assert (await stream.event())["id"] == started["seq"]
        await stream.disconnect()

    run(scenario)


def test_a_client_resuming_behind_gets_the_current_full_snapshot(owner: tuple[User, str], scan: Scan) -> None:
    behind = store.stage_started(scan.id, "universe_loading", 1)
    current = store.handover(scan.id, "universe_loading", "data_fetching", 10)
    assert behind is not None and current is not None

    async def scenario() -> None:
        stream = EventStream(
            f"/scan/sse/{scan.id}", [*token_header(owner[1]), (b"last-event-id", b"%d" % behind["seq"])]
        )
        await stream.open()
        resumed = await stream.event()
        assert resumed["id"] == current["seq"]
        assert resumed["stages"]["universe_loading"]["status"] == "completed"
        assert resumed["stages"]["data_fetching"]["status"] == "running"
        await stream.disconnect()

    run(scenario)


def test_a_client_that_already_has_the_terminal_event_gets_204(owner: tuple[User, str], scan: Scan) -> None:
    store.stage_started(scan.id, "universe_loading", 1)
    final = store.finished(scan.id, "cancelled", "cancelled by the user")
    assert final is not None

    async def scenario() -> None:
        stream = EventStream(
            f"/scan/sse/{scan.id}", [*token_header(owner[1]), (b"last-event-id", b"%d" % final["seq"])]
        )
        assert (await stream.open())[0] == 204
        assert await stream.body() == b""
        await stream.app.wait(TIMEOUT)

    run(scenario)


def test_a_burst_of_plain_updates_is_coalesced_and_the_latest_still_arrives(
    owner: tuple[User, str], scan: Scan
) -> None:
    updates = 50
    store.stage_started(scan.id, "universe_loading", 1)
    base = store.stage_started(scan.id, "symbol_scanning", updates)
    assert base is not None

    async def scenario() -> None:
        stream = EventStream(f"/scan/sse/{scan.id}", token_header(owner[1]))
        await stream.open()
        assert (await stream.event())["id"] == base["seq"]
        for done in range(1, updates + 1):
            await handcrafted_push(scan.id, copy.deepcopy(base) | {"seq": base["seq"] + done, "current": done})
        received = [await stream.event()]
        while received[-1]["id"] < base["seq"] + updates:
            received.append(await stream.event())
        assert len(received) < updates
        assert received[-1]["current"] == updates
        assert [e["id"] for e in received] == sorted({e["id"] for e in received})
        await stream.disconnect()

    run(scenario)


def test_a_silent_stream_sends_keepalive_comments(
    owner: tuple[User, str], scan: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "KEEPALIVE_SECONDS", 0.2)

    async def scenario() -> None:
        stream = EventStream(f"/scan/sse/{scan.id}", token_header(owner[1]))
        await stream.open()
        await stream.event()
        assert await stream.block() == ": keepalive"
        assert await stream.block() == ": keepalive"
        await stream.disconnect()

    run(scenario)


def test_a_client_going_away_unsubscribes_the_stream(
    owner: tuple[User, str], scan: Scan, redis_server: RedisServer
) -> None:
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    # The pub/sub layer's Redis channel for the scan's group.
    group_channel = f"{prefix}__group__{store.group_name(scan.id)}"

    def subscribers() -> int:
        return int(dict(redis_server.client().pubsub_numsub(group_channel))[group_channel.encode()])

    async def scenario() -> None:
        stream = EventStream(f"/scan/sse/{scan.id}", token_header(owner[1]))
        await stream.open()
        await stream.event()
        assert subscribers() == 1
        await stream.disconnect()
        deadline = time.monotonic() + TIMEOUT
        while subscribers() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert subscribers() == 0

    run(scenario)
