"""The API without Redis: what is stored in the database (results, history, diffs, tokens,
logging in) stays available, rate limits are counted in the process, and every path that needs
Redis answers 503 ``REDIS_UNAVAILABLE`` in the API's error shape, never 500.

The end-to-end test runs its own daphne against its own redis-server, which it stops; Redis
loading its append-only file is played by a server answering ``-LOADING`` to every command.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.throttling import AnonRateThrottle

from scanner.models import Scan
from tests.api.support import finished_scan, pending_scan
from tests.support.accounts import user_with_token
from tests.support.processes import RedisServer, WebServer, database_url, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30  # seconds one answer may take on a loaded machine with Redis down


@pytest.fixture(autouse=True)
def fresh_throttle_history(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.throttles import RateWindows, WindowThrottle

    monkeypatch.setattr(WindowThrottle, "windows", RateWindows(key_prefix=f"throttle-{uuid.uuid4()}"))


@pytest.fixture(scope="module")
def lone_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own, which its tests stop."""
    server = RedisServer(tmp_path_factory.mktemp("lone-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lone_web(
    lone_redis: RedisServer, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    """daphne on the test database and ``lone_redis`` (broker, progress, rate limits, cache)."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    env = {"REDIS_URL": lone_redis.url, "CACHE_REDIS_URL": lone_redis.url, "DATABASE_URL": db_url}
    server = WebServer({**env, "DJANGO_DEBUG": "false"}, tmp_path_factory.mktemp("lone-web") / "daphne.log")
    server.start()
    yield server
    server.stop()


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    opener: urllib.request.OpenerDirector,
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Answer:
    data, sent = None, dict(headers or {})
    if body is not None:
        data, sent["Content-Type"] = json.dumps(body).encode(), "application/json"
    if form is not None:
        data, sent["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.headers, err.read())


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def redis_unavailable(answer: Answer) -> dict[str, Any]:
    assert answer.status == 503, answer.body[:500]
    assert answer.headers["Content-Type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == "REDIS_UNAVAILABLE"
    assert "Redis" in error["message"] and error["suggestions"]
    assert answer.headers["Retry-After"] == "5"
    return dict(error)


def test_with_redis_stopped_stored_results_tokens_and_logins_answer_and_the_rest_answers_503(
    lone_redis: RedisServer, lone_web: WebServer
) -> None:
    owner, token = user_with_token("reader")
    owner.set_password("reader's password")
    owner.save()
    older, newer, running = finished_scan(owner, []), finished_scan(owner, []), pending_scan(owner, "running")
    auth = {"Authorization": f"Token {token}"}
    base = lone_web.url
    api = urllib.request.build_opener()
    assert call(api, f"{base}/scan/history", headers=auth).status == 200  # up, with Redis

    lone_redis.stop()
    try:
        for path in (
            f"/scan/results/{newer.id}",
            f"/scan/results/{newer.id}?format=csv",
            "/scan/history",
            f"/scan/diff/{older.id}/{newer.id}",
        ):
            assert call(api, base + path, headers=auth).status == 200, path
        issued = call(api, f"{base}/api/auth/token/", "POST", {"username": "reader", "password": "reader's password"})
        assert (issued.status, issued.json()["token"]) == (200, token)

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
        assert call(browser, f"{base}/accounts/login/").status == 200
        csrf = next(str(cookie.value) for cookie in jar if cookie.name == "csrftoken")
        form = {"username": "reader", "password": "reader's password", "csrfmiddlewaretoken": csrf}
        logged_in = call(browser, f"{base}/accounts/login/", "POST", form=form)
        assert logged_in.status == 302 and any(cookie.name == "sessionid" for cookie in jar)

        scans = Scan.objects.filter(owner=owner).count()
        redis_unavailable(call(api, f"{base}/scan/start", "POST", {}, headers=auth))
        assert Scan.objects.filter(owner=owner).count() == scans  # no pending row left that never runs
        redis_unavailable(call(api, f"{base}/scan/progress/{running.id}", headers=auth))
        redis_unavailable(call(api, f"{base}/scan/active", headers=auth))
        redis_unavailable(call(api, f"{base}/scan/sse/{running.id}", headers=auth))  # a view outside DRF
    finally:
        lone_redis.start()
    started = call(api, f"{base}/scan/start", "POST", {"max_symbols": 11}, headers=auth)
    assert started.status == 202, started.body[:500]
    log = Path(lone_web.log).read_text(errors="replace")
    assert "Traceback" not in log
    assert "rate limits counted in this process only" in log


class LoadingRedis:
    """A server on 127.0.0.1 answering every Redis command with ``-LOADING``, as a Redis that is
    loading its append-only file does."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    @staticmethod
    def _answer(connection: socket.socket) -> None:
        pending = b""
        with connection:
            while chunk := connection.recv(65536):
                pending += chunk
                count, pending = _complete_commands(pending)
                connection.sendall(b"-LOADING Redis is loading the dataset in memory\r\n" * count)

    def close(self) -> None:
        self.listener.close()


def _complete_commands(buffer: bytes) -> tuple[int, bytes]:
    """How many whole RESP commands ``buffer`` starts with, and what follows them."""
    count = 0
    while True:
        end = _command_end(buffer)
        if end is None:
            return count, buffer
        count, buffer = count + 1, buffer[end:]


def _command_end(buffer: bytes) -> int | None:
    line = buffer.find(b"\r\n")
    if line < 0:
        return None
    if not buffer.startswith(b"*"):  # an inline command
        return line + 2
    position = line + 2
    for _ in range(int(buffer[1:line])):
        header = buffer.find(b"\r\n", position)
        if header < 0:
            return None
        position = header + 2 + int(buffer[position + 1 : header]) + 2
        if position > len(buffer):
            return None
    return position


@pytest.fixture
def loading_redis(settings: Any) -> Iterator[LoadingRedis]:
    """REDIS_URL and CACHE_REDIS_URL pointing at a Redis that is loading its data."""
    server = LoadingRedis()
    settings.REDIS_URL = settings.CACHE_REDIS_URL = server.url
    yield server
    server.close()


def test_while_redis_loads_its_data_stored_results_answer_and_progress_answers_503(
    loading_redis: LoadingRedis, caplog: pytest.LogCaptureFixture
) -> None:
    owner, token = user_with_token("patient")
    scan, running = finished_scan(owner, []), pending_scan(owner, "running")
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/scan/history").status_code == 200
    assert client.get(f"/scan/results/{scan.id}").status_code == 200
    response = client.get(f"/scan/progress/{running.id}")
    assert response.status_code == 503, response.content[:500]
    assert response.json()["error"]["code"] == "REDIS_UNAVAILABLE"
    assert "BusyLoadingError" in caplog.text


def test_rate_limits_are_counted_in_the_process_while_redis_is_down_and_that_is_logged_once(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setitem(AnonRateThrottle.THROTTLE_RATES, "anon", "3/min")
    statuses = [Client().post("/api/auth/token/", {}, content_type="application/json").status_code for _ in range(5)]
    assert statuses == [400, 400, 400, 429, 429]
    warnings = [r for r in caplog.records if r.name == "infra.throttles" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis is unreachable" in warnings[0].getMessage()


def test_users_are_limited_in_the_process_too_while_redis_is_down(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    _, token = user_with_token("busy")
    monkeypatch.setitem(AnonRateThrottle.THROTTLE_RATES, "user", "2/min")
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    assert [client.get("/scan/history").status_code for _ in range(3)] == [200, 200, 429]
