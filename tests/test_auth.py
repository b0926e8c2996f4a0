"""Authentication that resists guessing: throttles keyed on the client's address (not on headers
it chose), logins locked after repeated failures, tokens that expire and can be revoked,
short-lived tickets for WebSocket and SSE URLs, and no credential in any log line."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from ipaddress import ip_network
from typing import Any
from unittest import mock

import pytest
import websockets
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core import signing
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.throttling import AnonRateThrottle

from infra.logs import RedactFilter
from infra.throttles import RateWindows, WindowThrottle, client_address
from infra.tokens import ticket_for
from technic_project.asgi import application
from tests.support.accounts import run, user_with_token
from tests.support.factories import ScanFactory
from tests.support.processes import WebServer
from tests.support.streams import EventStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

TOKEN_URL = "/api/auth/token/"
LOGIN_URL = "/accounts/login/"
TIMEOUT = 10
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def fresh_throttle_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WindowThrottle, "windows", RateWindows(key_prefix=f"throttle-{uuid.uuid4()}"))


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="correct horse")


def post_json(client: Client, url: str, body: Any, **extra: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", **extra)


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.content[:500]
    return str(response.json()["error"]["code"])


# --- Who a request comes from ----------------------------------------------------------------


def test_rotating_x_forwarded_for_does_not_escape_the_anonymous_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AnonRateThrottle.THROTTLE_RATES, "anon", "3/min")
    codes = [
        error_code(post_json(Client(), TOKEN_URL, {}, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}"), 400 if n < 3 else 429)
        for n in range(5)
    ]
    assert codes == ["VALIDATION_ERROR"] * 3 + ["THROTTLED"] * 2


def test_behind_a_trusted_proxy_the_client_is_the_hop_the_proxy_saw(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.TECHNIC_TRUSTED_PROXIES = (ip_network("127.0.0.1"),)
    monkeypatch.setitem(AnonRateThrottle.THROTTLE_RATES, "anon", "3/min")
    # The test client's peer (127.0.0.1) is the proxy; what the client itself wrote left of the
    # hop the proxy appended changes nothing.
    codes = [
        error_code(
            post_json(Client(), TOKEN_URL, {}, HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 203.0.113.7"), 400 if n < 3 else 429
        )
        for n in range(4)
    ]
    assert codes == ["VALIDATION_ERROR"] * 3 + ["THROTTLED"]
    # Another client behind the same proxy has its own count.
    assert error_code(post_json(Client(), TOKEN_URL, {}, HTTP_X_FORWARDED_FOR="203.0.113.8"), 400) == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("192.0.2.1", "198.51.100.9", [], "192.0.2.1"),
        ("192.0.2.1", "198.51.100.9", ["10.0.0.0/8"], "192.0.2.1"),  # the peer is not a proxy we trust
        ("10.0.0.2", "198.51.100.9", ["10.0.0.0/8"], "198.51.100.9"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.9, 10.0.0.7", ["10.0.0.0/8"], "198.51.100.9"),  # two proxies
        ("10.0.0.2", "10.0.0.9", ["10.0.0.0/8"], "10.0.0.9"),  # began at a proxy
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
        ("::1", "2001:db8::5", ["::1"], "2001:db8::5"),
    ],
)
def test_the_client_address_trusts_forwarded_for_only_from_trusted_proxies(
    settings: Any, peer: str, forwarded: str, trusted: list[str], client: str
) -> None:
    settings.TECHNIC_TRUSTED_PROXIES = tuple(ip_network(n) for n in trusted)
    request = RequestFactory().get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == client


# --- Logins locked after repeated failures ---------------------------------------------------


def login(client: Client, username: str, password: str) -> Any:
    return client.post(LOGIN_URL, {"username": username, "password": password})


def test_the_login_page_locks_an_address_and_a_user_name_after_ten_failures(alice: User) -> None:
    attacker = Client(REMOTE_ADDR="192.0.2.10")
    statuses = [login(attacker, "alice", f"guess {n}").status_code for n in range(12)]
    assert statuses == [200] * 9 + [429] * 3
    locked = login(attacker, "alice", "correct horse")
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert int(locked["Retry-After"]) == 900
    # Locked by address (for any user name) and by user name (from any address).
    User.objects.create_user("bob", password="bob's password")
    assert login(attacker, "bob", "bob's password").status_code == 429
    assert login(Client(REMOTE_ADDR="192.0.2.99"), "alice", "correct horse").status_code == 429

    call_command("axes_reset_username", "alice")  # what an operator does to unlock at once
    assert login(Client(REMOTE_ADDR="192.0.2.99"), "alice", "correct horse").status_code == 302


def test_the_admin_login_is_locked_too_with_a_json_error(alice: User) -> None:
    attacker = Client(REMOTE_ADDR="192.0.2.11")
    statuses = [
        attacker.post("/admin/login/", {"username": "alice", "password": f"guess {n}"}).status_code for n in range(10)
    ]
    assert statuses == [200] * 9 + [429]
    response = attacker.post("/admin/login/", {"username": "alice", "password": "correct horse"})
    assert error_code(response, 429) == "LOGIN_LOCKED_OUT"


def test_the_token_endpoint_locks_after_ten_failures_and_counts_with_the_login_page(alice: User) -> None:
    attacker = Client(REMOTE_ADDR="192.0.2.12")
    for n in range(5):
        assert login(attacker, "alice", f"guess {n}").status_code == 200
    codes = [
        error_code(
            post_json(attacker, TOKEN_URL, {"username": "alice", "password": f"guess {n}"}), 400 if n < 4 else 429
        )
        for n in range(6)
    ]
    assert codes == ["INVALID_CREDENTIALS"] * 4 + ["LOGIN_LOCKED_OUT"] * 2
    response = post_json(attacker, TOKEN_URL, {"username": "alice", "password": "correct horse"})
    assert error_code(response, 429) == "LOGIN_LOCKED_OUT"
    assert response["Retry-After"] == "900"
    assert response.json()["error"]["details"] == {"retry_after_seconds": 900, "failure_limit": 10}
    assert not Token.objects.exists()


def test_a_successful_login_clears_the_failures_counted_before(alice: User) -> None:
    user = Client(REMOTE_ADDR="192.0.2.13")
    for n in range(9):
        assert login(user, "alice", f"typo {n}").status_code == 200
    assert login(user, "alice", "correct horse").status_code == 302
    user.logout()
    assert login(user, "alice", "one more typo").status_code == 200
    assert login(user, "alice", "correct horse").status_code == 302


# --- Tokens that expire and can be revoked ---------------------------------------------------


def age(token: str, seconds: int) -> None:
    Token.objects.filter(key=token).update(created=timezone.now() - timedelta(seconds=seconds))


def test_a_token_older_than_the_ttl_answers_401_and_the_token_endpoint_makes_a_new_one(
    alice: User, settings: Any
) -> None:
    settings.TECHNIC_TOKEN_TTL = 3600
    first = post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"}).json()
    created = Token.objects.get(key=first["token"]).created
    assert first["expires_at"] == (created + timedelta(seconds=3600)).isoformat().replace("+00:00", "Z")
    assert Client().get("/scan/history", HTTP_AUTHORIZATION=f"Token {first['token']}").status_code == 200

    age(first["token"], 3601)
    response = Client().get("/scan/history", HTTP_AUTHORIZATION=f"Token {first['token']}")
    assert error_code(response, 401) == "NOT_AUTHENTICATED"
    assert "expired" in response.json()["error"]["message"]

    renewed = post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"}).json()
    assert renewed["token"] != first["token"]
    assert Client().get("/scan/history", HTTP_AUTHORIZATION=f"Token {renewed['token']}").status_code == 200


def test_with_a_ttl_of_zero_tokens_do_not_expire(settings: Any) -> None:
    settings.TECHNIC_TOKEN_TTL = 0
    _, token = user_with_token("old-timer")
    age(token, 10 * 365 * 86400)
    assert Client().get("/scan/history", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    response = post_json(Client(), TOKEN_URL, {"username": "old-timer", "password": "pw"})
    assert response.json() == {"token": token, "expires_at": None}


def test_an_expired_token_opens_no_websocket_or_event_stream(settings: Any) -> None:
    settings.TECHNIC_TOKEN_TTL = 60
    owner, token = user_with_token("owner")
    scan = ScanFactory.create(owner=owner)
    age(token, 61)
    assert ws_connect(f"/scan/ws/{scan.id}?token={token}") == (False, 4401)
    assert sse_status(f"/scan/sse/{scan.id}?token={token}") == 401


def test_revoking_the_token_ends_it_at_once(alice: User) -> None:
    token = post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"}).json()["token"]
    revoked = Client().post("/api/auth/token/revoke/", HTTP_AUTHORIZATION=f"Token {token}")
    assert revoked.status_code == 204
    assert error_code(Client().get("/scan/history", HTTP_AUTHORIZATION=f"Token {token}"), 401) == "NOT_AUTHENTICATED"
    assert error_code(Client().post("/api/auth/token/revoke/", HTTP_AUTHORIZATION=f"Token {token}"), 401)
    again = post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"}).json()["token"]
    assert again != token


def test_a_session_revokes_its_users_token_with_the_csrf_token(alice: User) -> None:
    token = Token.objects.create(user=alice).key
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    revoke = "/api/auth/token/revoke/"
    assert error_code(browser.post(revoke, content_type="application/json"), 403) == "CSRF_FAILED"
    browser.get("/")  # a page: sets the csrftoken cookie
    csrf = browser.cookies["csrftoken"].value
    response = browser.post(revoke, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 204
    assert not Token.objects.filter(key=token).exists()


# --- Tickets for WebSocket and SSE URLs ------------------------------------------------------


def ws_connect(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[bool, int | None]:
    result: list[tuple[bool, int | None]] = []

    async def scenario() -> None:
        ws = WebsocketCommunicator(application, path, headers=[ORIGIN, *(headers or [])])
        result.append(await ws.connect(TIMEOUT))
        await ws.disconnect()

    run(scenario)
    return result[0]


def sse_status(path: str) -> int:
    result: list[int] = []

    async def scenario() -> None:
        stream = EventStream(path)
        status, _ = await stream.open()
        result.append(status)
        await stream.disconnect()

    run(scenario)
    return result[0]


def ticket(token: str) -> str:
    response = Client().post("/api/auth/ticket/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200, response.content
    assert response.json()["expires_in"] == 60
    return str(response.json()["ticket"])


def test_a_ticket_opens_the_users_websocket_and_event_stream() -> None:
    owner, token = user_with_token("owner")
    scan = ScanFactory.create(owner=owner)
    assert ws_connect(f"/scan/ws/{scan.id}?ticket={ticket(token)}") == (True, None)
    assert sse_status(f"/scan/sse/{scan.id}?ticket={ticket(token)}") == 200
    # Only the user's own scans, as with a token.
    _, other_token = user_with_token("other")
    assert ws_connect(f"/scan/ws/{scan.id}?ticket={ticket(other_token)}") == (False, 4404)


def test_a_session_gets_a_ticket_too() -> None:
    owner, _ = user_with_token("owner")
    browser = Client()
    browser.force_login(owner)
    assert browser.post("/api/auth/ticket/").status_code == 200
    assert error_code(Client().post("/api/auth/ticket/"), 401) == "NOT_AUTHENTICATED"


def test_an_expired_or_forged_ticket_is_refused_even_with_a_session() -> None:
    owner, _ = user_with_token("owner")
    scan = ScanFactory.create(owner=owner)
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 61):
        old = ticket_for(owner)
    forged = signing.dumps({"user": owner.pk}, key="not-the-secret-key", salt="technic.progress-ticket")
    browser = Client()
    browser.force_login(owner)
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())
    for bad in (old, forged, "junk"):
        assert ws_connect(f"/scan/ws/{scan.id}?ticket={bad}", [cookie]) == (False, 4401)
        assert sse_status(f"/scan/sse/{scan.id}?ticket={bad}") == 401


def test_a_ticket_does_not_authenticate_the_rest_of_the_api() -> None:
    _, token = user_with_token("owner")
    response = Client().get(f"/scan/history?ticket={ticket(token)}")
    assert error_code(response, 401) == "NOT_AUTHENTICATED"


# --- No credential in any log line -----------------------------------------------------------


def test_daphnes_access_log_shows_no_token_or_ticket(web_server: WebServer) -> None:
    owner, token = user_with_token("logged")
    scan = ScanFactory.create(owner=owner)
    fresh, unknown = ticket(token), uuid.uuid4()
    base = f"127.0.0.1:{web_server.port}"
    for path in (f"/scan/sse/{unknown}?token={token}", f"/scan/sse/{unknown}?x=1&ticket={fresh}"):
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://{base}{path}", timeout=TIMEOUT)
        assert answer.value.code == 404

    async def socket() -> None:
        url = f"ws://{base}/scan/ws/{scan.id}?token={token}"
        async with websockets.connect(url, origin=websockets.Origin("http://127.0.0.1"), open_timeout=TIMEOUT) as ws:
            await asyncio.wait_for(ws.recv(), TIMEOUT)

    asyncio.run(socket())
    deadline = time.monotonic() + TIMEOUT
    log = ""
    while time.monotonic() < deadline and f"WSDISCONNECT /scan/ws/{scan.id}" not in log:
        time.sleep(0.1)
        log = web_server.log.read_text(errors="replace")
    assert f"WSDISCONNECT /scan/ws/{scan.id}" in log
    assert token not in log and fresh not in log
    assert f"/scan/sse/{unknown}?token=[redacted]" in log
    assert f"/scan/sse/{unknown}?x=1&ticket=[redacted]" in log


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("GET /scan/sse/1?token=0123abc&x=1", "GET /scan/sse/1?token=[redacted]&x=1"),
        ("WSCONNECT /scan/ws/1?ticket=eyJ1c2VyIjoxfQ:1vQ:sig", "WSCONNECT /scan/ws/1?ticket=[redacted]"),
        ("headers {'Authorization': 'Token " + "a1" * 20 + "'}", "headers {'Authorization': 'Token [redacted]'}"),
        ("The token has expired; 3 tokens=5", "The token has expired; 3 tokens=5"),
    ],
)
def test_our_log_lines_show_no_token_or_ticket(line: str, shown: str) -> None:
    console = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactFilter) for f in h.filters))
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "seen: %s", (line,), None)
    assert console.filter(record)
    assert console.format(record).endswith(f"seen: {shown}")
