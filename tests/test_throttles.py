"""Rate limits are atomic: however many requests arrive at once, exactly the limit passes.

Against a real redis-server: threads in this process hitting one window together, and
concurrent scan starts through the real daphne.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from infra.throttles import RateWindows, ScopeThrottle, WindowThrottle
from tests.support.accounts import user_with_token
from tests.support.processes import WebServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]


class StartView(APIView):
    throttle_scope = "scan_start"


def test_threads_hitting_one_window_at_once_let_exactly_the_limit_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WindowThrottle, "windows", RateWindows(key_prefix=f"throttle-{uuid.uuid4()}"))
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"scan_start": "5/min"})
    request = Request(RequestFactory().post("/scan/start", REMOTE_ADDR="192.0.2.50"))
    request.user = AnonymousUser()
    clients = 24
    barrier = threading.Barrier(clients)

    def start(_: int) -> bool:
        throttle = ScopeThrottle()
        barrier.wait()
        return throttle.allow_request(request, StartView())

    with ThreadPoolExecutor(clients) as pool:
        passed = list(pool.map(start, range(clients)))
    assert passed.count(True) == 5
    assert WindowThrottle.windows.hit("throttle_scan_start_192.0.2.50", 5, 60) is not None  # counted in Redis


def test_concurrent_scan_starts_through_daphne_pass_exactly_the_scan_start_rate(web_server: WebServer) -> None:
    _, token = user_with_token(f"eager-{uuid.uuid4().hex[:8]}")
    limit, _ = ScopedRateThrottle().parse_rate(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["scan_start"])
    assert limit is not None
    clients = limit + 10
    barrier = threading.Barrier(clients)

    def start(_: int) -> tuple[int, str]:
        # An invalid option: a start the throttle lets through answers 400 and starts nothing.
        request = urllib.request.Request(
            f"{web_server.url}/scan/start",
            data=json.dumps({"max_symbols": "many"}).encode(),
            method="POST",
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, ""
        except urllib.error.HTTPError as err:
            body: dict[str, Any] = json.loads(err.read())
            return err.code, str(body["error"]["code"])

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(start, range(clients)))
    assert sorted(answers) == sorted([(400, "INVALID_MAX_SYMBOLS")] * limit + [(429, "THROTTLED")] * 10), answers
