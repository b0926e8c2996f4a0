"""Live progress end to end: real workers update it, daphne pushes it, real clients read it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest
import websockets
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from engine.config import ScanConfig
from progress import store
from progress.tracker import STAGES
from scanner import services
from scanner.models import Scan
from tests.support.processes import WebServer, Workers
from tests.support.waits import wait_finished

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def owner_token() -> tuple[User, str]:
    user = User.objects.create_user(f"analyst-{time.monotonic_ns()}", password="pw")
    return user, Token.objects.create(user=user).key


def queued_scan(owner: User, monkeypatch: pytest.MonkeyPatch) -> Scan:
    """A pending scan whose workflow is not sent yet (the test sends it with ``scan_start``)."""
    monkeypatch.setattr(services.transaction, "on_commit", lambda _: None)
    return services.scan_create(owner=owner, config=ScanConfig(), batch_size=250)


async def read_socket(url: str, pause_after_first: float = 0.0) -> tuple[list[dict[str, Any]], float]:
    """Every message until the server closes; optionally stop reading for a while after the first."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, origin=websockets.Origin("http://127.0.0.1"), open_timeout=10) as ws:
        async for raw in ws:
            messages.append(json.loads(raw))
            if len(messages) == 1 and pause_after_first:
                await asyncio.sleep(pause_after_first)
        return messages, time.time()


def assert_a_clean_progression(messages: list[dict[str, Any]], scan: Scan) -> None:
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs)), "seq must strictly increase"
    overall = [m["overall_progress"] for m in messages]
    assert overall == sorted(overall), "overall_progress must never decrease"
    order = [STAGES.index(m["current_stage"]) for m in messages if m["current_stage"]]
    assert order == sorted(order), "stages must come in order"
    assert [m["type"] for m in messages].count("terminal") == 1 and messages[-1]["type"] == "terminal"
    last = messages[-1]
    assert last["status"] == "completed" and last["overall_progress"] == 100.0
    assert last["results_url"] == f"/scan/results/{scan.id}"
    assert all(m["status"] not in TERMINAL for m in messages[:-1])


def test_websocket_clients_see_every_stage_in_order_and_one_terminal_message(
    workers: Workers, web_server: WebServer, owner_token: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, token = owner_token
    scan = queued_scan(owner, monkeypatch)
    url = f"ws://127.0.0.1:{web_server.port}/scan/ws/{scan.id}?token={token}"

    async def run() -> list[tuple[list[dict[str, Any]], float]]:
        clients = [asyncio.create_task(read_socket(url)), asyncio.create_task(read_socket(url, pause_after_first=1.5))]
        await asyncio.sleep(1.0)  # both connected and holding the pending snapshot
        services.scan_start(scan)
        return await asyncio.wait_for(asyncio.gather(*clients), 120)

    (steady, _), (paused, paused_done) = asyncio.run(run())
    scan.refresh_from_db()
    assert scan.status == "completed"
    for messages in (steady, paused):
        assert messages[0]["status"] == "pending"
        assert_a_clean_progression(messages, scan)
    assert {m["current_stage"] for m in steady} - {None} == set(STAGES), "each stage is pushed when it starts"
    assert any(m["current_stage"] == "symbol_scanning" and 0 < m["stage_progress"] < 100 for m in steady)
    final = store.snapshot(scan.id)
    assert final is not None and steady[-1]["seq"] == paused[-1]["seq"] == final["seq"]
    # The client that stopped reading ends on the fresh final state, not on a backlog.
    assert paused[-1]["status"] == "completed" and paused_done >= paused[-1]["updated_at"]


def test_a_client_connecting_after_the_end_gets_the_terminal_snapshot_at_once(
    workers: Workers, web_server: WebServer, owner_token: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, token = owner_token
    scan = queued_scan(owner, monkeypatch)
    services.scan_start(scan)
    wait_finished(scan.id)
    messages, _ = asyncio.run(read_socket(f"ws://127.0.0.1:{web_server.port}/scan/ws/{scan.id}?token={token}"))
    assert [m["type"] for m in messages] == ["terminal"]
    assert messages[0]["status"] == "completed"


def read_sse(url: str, token: str, last_event_id: int | None, stop_after: int | None) -> list[dict[str, Any]]:
    """Events of the stream (``stop_after`` events, or to its end)."""
    headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[dict[str, Any]] = []
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            elif not line and "data" in fields:
                events.append({"id": int(fields["id"]), "event": fields["event"], **json.loads(fields["data"])})
                fields = {}
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events


def test_an_sse_client_that_reconnects_with_last_event_id_misses_nothing_and_never_goes_back(
    workers: Workers, web_server: WebServer, owner_token: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, token = owner_token
    scan = queued_scan(owner, monkeypatch)
    url = f"http://127.0.0.1:{web_server.port}/scan/sse/{scan.id}"
    first = read_sse(url, token, None, stop_after=1)
    services.scan_start(scan)
    second = read_sse(url, token, first[-1]["id"], stop_after=3)
    time.sleep(0.5)  # away for a while
    third = read_sse(url, token, second[-1]["id"], stop_after=None)
    events = first + second + third
    assert [e["id"] for e in events] == [e["seq"] for e in events]
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    overall = [e["overall_progress"] for e in events]
    assert overall == sorted(overall)
    assert events[-1]["event"] == "terminal" and events[-1]["status"] == "completed"
    assert [e["event"] for e in events].count("terminal") == 1
    assert all(events[-1]["stages"][s]["status"] == "completed" for s in STAGES)
