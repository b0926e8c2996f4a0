"""The progress WebSocket through the real ASGI stack (origin check, session and token
middleware, routing) against a real redis-server; the store pushes through the real channel layer."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import channels.consumer
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from progress import store
from scanner.models import Scan
from technic_project.asgi import application
from tests.support.accounts import handcrafted_push, run, user_with_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

TIMEOUT = 10  # seconds any expected message may take on a loaded machine
ORIGIN = (b"origin", b"http://localhost")


def socket(scan_id: Any, token: str | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    path = f"/scan/ws/{scan_id}" + (f"?token={token}" if token else "")
    return WebsocketCommunicator(application, path, headers=headers if headers is not None else [ORIGIN])


async def receive_until(ws: Any, seq: int) -> list[dict[str, Any]]:
    """Messages up to and including the one with ``seq`` (fails if it never comes)."""
    messages = [await ws.receive_json_from(TIMEOUT)]
    while messages[-1]["seq"] < seq:
        messages.append(await ws.receive_json_from(TIMEOUT))
    return messages


def test_a_token_in_the_query_string_connects_and_the_current_snapshot_comes_first(
    owner: tuple[User, str], scan: Scan
) -> None:
    async def scenario() -> None:
        ws = socket(scan.id, owner[1])
        assert await ws.connect(TIMEOUT) == (True, None)
        first = await ws.receive_json_from(TIMEOUT)
        assert first["type"] == "progress"
        assert (first["scan_id"], first["status"], first["seq"]) == (str(scan.id), "pending", 0)
        assert set(first["stages"]) == {"universe_loading", "data_fetching", "symbol_scanning", "finalization"}
        await ws.disconnect()

    run(scenario)


def test_the_session_user_connects_without_a_token(owner: tuple[User, str], scan: Scan) -> None:
    browser = Client()
    browser.force_login(owner[0])
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        ws = socket(scan.id, headers=[ORIGIN, (b"cookie", cookie)])
        assert (await ws.connect(TIMEOUT))[0]
        assert (await ws.receive_json_from(TIMEOUT))["scan_id"] == str(scan.id)
        await ws.disconnect()

    run(scenario)


def test_an_invalid_token_is_anonymous_even_with_a_session(owner: tuple[User, str], scan: Scan) -> None:
    browser = Client()
    browser.force_login(owner[0])
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        ws = socket(scan.id, "not-a-token", headers=[ORIGIN, (b"cookie", cookie)])
        assert await ws.connect(TIMEOUT) == (False, 4401)
        await ws.disconnect()

    run(scenario)


def test_an_anonymous_connection_is_refused_with_4401(scan: Scan) -> None:
    async def scenario() -> None:
        ws = socket(scan.id)
        assert await ws.connect(TIMEOUT) == (False, 4401)
        await ws.disconnect()

    run(scenario)


def test_another_users_scan_is_refused_with_4404_even_for_staff(scan: Scan) -> None:
    _, staff_token = user_with_token("staff", is_staff=True, is_superuser=True)

    async def scenario() -> None:
        ws = socket(scan.id, staff_token)
        assert await ws.connect(TIMEOUT) == (False, 4404)
        await ws.disconnect()

    run(scenario)


def test_an_unknown_scan_is_refused_with_4404(owner: tuple[User, str]) -> None:
    async def scenario() -> None:
        ws = socket("00000000-0000-0000-0000-000000000000", owner[1])
        assert await ws.connect(TIMEOUT) == (False, 4404)
        await ws.disconnect()

    run(scenario)


def test_a_foreign_origin_is_refused(owner: tuple[User, str], scan: Scan) -> None:
    async def scenario() -> None:
        ws = socket(scan.id, owner[1], headers=[(b"origin", b"http://evil.example")])
        connected, _ = await ws.connect(TIMEOUT)
        assert not connected
        await ws.disconnect()

    run(scenario)


def test_pushes_are_forwarded_in_seq_order_and_stale_ones_dropped(owner: tuple[User, str], scan: Scan) -> None:
    async def scenario() -> None:
        ws = socket(scan.id, owner[1])
        await ws.connect(TIMEOUT)
        assert (await ws.receive_json_from(TIMEOUT))["seq"] == 0
        await ws.send_to(text_data="ping")  # not JSON: ignored, the socket stays up
        begun = store.stage_started(scan.id, "universe_loading", 1)
        assert begun is not None
        assert (await ws.receive_json_from(TIMEOUT))["seq"] == begun["seq"]

        # Crossed messages from other workers: no newer than what was sent, though they
        # change the stage (which would otherwise go out at once).
        for seq in (begun["seq"], begun["seq"] - 1):
            stale = copy.deepcopy(begun) | {"seq": seq, "current_stage": "finalization"}
            await handcrafted_push(scan.id, stale)
        started = store.handover(scan.id, "universe_loading", "data_fetching", 10)
        assert started is not None
        received = await ws.receive_json_from(TIMEOUT)
        assert (received["seq"], received["current_stage"]) == (started["seq"], "data_fetching")
        await ws.disconnect()

    run(scenario)


def test_pushes_do_not_hop_to_the_database_thread(
    owner: tuple[User, str], scan: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """channels' ``dispatch`` closes old database connections through the one thread-sensitive
    executor before every handler: once per message per client, it made daphne the bottleneck
    of a scan watched by 50 clients (bench.progress). Pushes skip it; the connection's own
    messages still go through it."""
    hops: list[str] = []

    async def counted() -> None:
        hops.append("close_old_connections")

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)

    async def scenario() -> None:
        ws = socket(scan.id, owner[1])
        await ws.connect(TIMEOUT)
        await ws.receive_json_from(TIMEOUT)
        on_connect = len(hops)
        assert on_connect >= 1
        begun = store.stage_started(scan.id, "universe_loading", 1)
        assert begun is not None
        started = store.handover(scan.id, "universe_loading", "data_fetching", 10)
        assert started is not None
        assert [m["seq"] for m in await receive_until(ws, started["seq"])][-1] == started["seq"]
        assert len(hops) == on_connect
        await ws.disconnect()

    run(scenario)


def test_every_change_of_stage_or_status_arrives_in_order(owner: tuple[User, str], scan: Scan) -> None:
    async def scenario() -> None:
        ws = socket(scan.id, owner[1])
        await ws.connect(TIMEOUT)
        await ws.receive_json_from(TIMEOUT)
        stages = [("universe_loading", 1), ("data_fetching", 40), ("symbol_scanning", 40), ("finalization", 1)]
        milestones = [store.stage_started(scan.id, *stages[0])]
        for (stage, total), (following, following_total) in itertools.pairwise(stages):
            for _ in range(total):
                store.advanced(scan.id, stage, 1, "AAPL")
            milestones.append(store.handover(scan.id, stage, following, following_total))
        milestones.append(store.finished(scan.id, "completed", "done"))
        wanted = [m["seq"] for m in milestones if m is not None]
        assert len(wanted) == 5

        received = await receive_until(ws, wanted[-1])
        seqs = [m["seq"] for m in received]
        assert seqs == sorted(set(seqs))
        assert set(wanted) <= set(seqs), f"milestones {sorted(set(wanted) - set(seqs))} were dropped"
        assert [m["type"] for m in received] == ["progress"] * (len(received) - 1) + ["terminal"]
        assert (await ws.receive_output(TIMEOUT)) == {"type": "websocket.close", "code": 1000}
        await ws.disconnect()

    run(scenario)


def test_a_burst_of_plain_updates_is_coalesced_and_the_latest_still_arrives(
    owner: tuple[User, str], scan: Scan
) -> None:
    updates = 50

    async def scenario() -> None:
        ws = socket(scan.id, owner[1])
        await ws.connect(TIMEOUT)
        await ws.receive_json_from(TIMEOUT)
        store.stage_started(scan.id, "universe_loading", 1)
        base = store.stage_started(scan.id, "symbol_scanning", updates)
        assert base is not None
        await receive_until(ws, base["seq"])

        # Pushed directly: the store itself throttles counter updates before they are sent.
        for done in range(1, updates + 1):
            snap = copy.deepcopy(base) | {"seq": base["seq"] + done, "current": done}
            await handcrafted_push(scan.id, snap)
        received = await receive_until(ws, base["seq"] + updates)
        assert len(received) < updates
        assert received[-1]["current"] == updates
        assert [m["seq"] for m in received] == sorted({m["seq"] for m in received})
        assert await ws.receive_nothing(0.3)
        await ws.disconnect()

    run(scenario)


def test_the_terminal_message_comes_last_and_the_server_closes(owner: tuple[User, str], scan: Scan) -> None:
    async def scenario() -> None:
        ws = socket(scan.id, owner[1])
        await ws.connect(TIMEOUT)
        await ws.receive_json_from(TIMEOUT)
        store.stage_started(scan.id, "universe_loading", 1)
        final = store.finished(scan.id, "failed", "DATA_PROVIDER_ERROR: down")
        assert final is not None
        last = (await receive_until(ws, final["seq"]))[-1]
        assert (last["type"], last["status"]) == ("terminal", "failed")
        assert last["results_url"] == f"/scan/results/{scan.id}"
        assert (await ws.receive_output(TIMEOUT)) == {"type": "websocket.close", "code": 1000}
        await ws.disconnect()

    run(scenario)


def test_connecting_after_the_end_gets_the_terminal_snapshot_at_once(owner: tuple[User, str], scan: Scan) -> None:
    store.stage_started(scan.id, "universe_loading", 1)
    final = store.finished(scan.id, "completed", "done")
    assert final is not None

    async def scenario() -> None:
        ws = socket(scan.id, owner[1])
        assert (await ws.connect(TIMEOUT))[0]
        only = await ws.receive_json_from(TIMEOUT)
        assert (only["type"], only["status"], only["seq"]) == ("terminal", "completed", final["seq"])
        assert (await ws.receive_output(TIMEOUT)) == {"type": "websocket.close", "code": 1000}
        await ws.disconnect()

    run(scenario)
