"""Request bodies bounded in size and time, deep JSON and unrouted WebSocket paths, against the
web process as the Procfile runs it (``technic_project.server``, daphne) over raw sockets, and
against the ASGI application's body limit directly."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from infra.bodies import BodyLimitMiddleware
from technic_project.asgi import application
from tests.support.processes import RedisServer, WebServer, database_url
from tests.support.waits import wait_until

BODY_TIMEOUT = 2
MAX_BODY = 64 * 1024
TOKEN_PATH = "/api/auth/token/"


@pytest.fixture(scope="module")
def web(
    redis_server: RedisServer, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    """The web process with a short body timeout (its log is ``web.log``)."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "false",
        "TECHNIC_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "TECHNIC_MAX_BODY_BYTES": str(MAX_BODY),
    }
    server = WebServer(env, tmp_path_factory.mktemp("limits") / "web.log")
    server.start()
    yield server
    server.stop()


def connect(web: WebServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def read_answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one answer on ``sock`` (fails if it does not come in time)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer (got {data!r})"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the answer"
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def error_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


def log_since(web: WebServer, offset: int) -> str:
    return web.log.read_bytes()[offset:].decode(errors="replace")


def unlinked_files(pid: int) -> set[str]:
    """Files the process holds open that are unlinked: temporary files, where Twisted spools bodies."""
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.add(os.readlink(fd))
        except OSError:
            continue
    return {t for t in targets if t.endswith("(deleted)")}


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


# --- The web process -------------------------------------------------------------------------


@pytest.mark.integration
def test_a_twenty_digit_content_length_answers_413_at_once(web: WebServer) -> None:
    with connect(web) as sock:
        started = time.monotonic()
        sock.sendall(head("POST", TOKEN_PATH, "Content-Type: application/json", "Content-Length: 99999999999999999999"))
        status, headers, body = read_answer(sock, timeout=5)
    assert (status, error_code(body)) == (413, "PAYLOAD_TOO_LARGE")
    assert json.loads(body)["error"]["details"] == {"limit_bytes": MAX_BODY}
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert time.monotonic() - started < 5


@pytest.mark.integration
def test_a_150_mb_upload_answers_413_before_its_body_is_sent_and_nothing_is_spooled(web: WebServer) -> None:
    assert web.process is not None
    pid = web.process.pid
    rss_before, unlinked_before = rss_mb(pid), unlinked_files(pid)
    declared = 150 * 1024 * 1024
    chunk = b"x" * 65536
    sent = 0
    with connect(web) as sock:
        started = time.monotonic()
        sock.sendall(head("POST", "/scan/start", "Content-Type: application/json", f"Content-Length: {declared}"))
        sock.setblocking(False)
        # Keep sending, slowly, until the answer is there (at most 8 MB, 8 s).
        while time.monotonic() - started < 8 and sent < 8 * 1024 * 1024:
            readable, writable, _ = select.select([sock], [sock], [], 0.05)
            if readable:
                break
            if writable:
                with contextlib.suppress(BlockingIOError):  # the socket's buffer is full
                    sent += sock.send(chunk)
            time.sleep(0.01)
        spooled = unlinked_files(pid) - unlinked_before
        sock.setblocking(True)
        status, _, body = read_answer(sock, timeout=5)
    assert (status, error_code(body)) == (413, "PAYLOAD_TOO_LARGE")
    assert time.monotonic() - started < 8, f"no answer while {sent} bytes were sent"
    assert spooled == set(), "the body was spooled to a temporary file"
    assert rss_mb(pid) - rss_before < 50


@pytest.mark.integration
def test_a_chunked_body_answers_413_as_soon_as_it_passes_the_limit(web: WebServer) -> None:
    piece = b"x" * 16384
    with connect(web) as sock:
        sock.sendall(head("POST", TOKEN_PATH, "Content-Type: application/json", "Transfer-Encoding: chunked"))
        for _ in range(MAX_BODY // len(piece) + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        # No final chunk: the answer must not wait for the end of the body.
        status, _, body = read_answer(sock, timeout=5)
    assert (status, error_code(body)) == (413, "PAYLOAD_TOO_LARGE")


@pytest.mark.integration
def test_a_body_that_does_not_arrive_in_time_answers_408(web: WebServer) -> None:
    with connect(web) as sock:
        sock.sendall(head("POST", TOKEN_PATH, "Content-Type: application/json", "Content-Length: 100"))
        started = time.monotonic()
        sock.sendall(b'{"username": ')
        status, _, body = read_answer(sock, timeout=BODY_TIMEOUT + 10)
    waited = time.monotonic() - started
    assert (status, error_code(body)) == (408, "BODY_TIMEOUT")
    assert BODY_TIMEOUT - 0.5 < waited < BODY_TIMEOUT + 8


@pytest.mark.integration
def test_a_body_sent_in_pieces_within_the_timeout_is_answered_normally(web: WebServer) -> None:
    body = json.dumps(["a", "body", "in", "pieces"]).encode()
    with connect(web) as sock:
        sock.sendall(head("POST", TOKEN_PATH, "Content-Type: application/json", f"Content-Length: {len(body)}"))
        sock.sendall(body[:10])
        time.sleep(0.5)
        sock.sendall(body[10:])
        status, _, answer = read_answer(sock)
    # Parsed whole: the endpoint's own answer to a JSON array.
    assert (status, error_code(answer)) == (400, "VALIDATION_ERROR")


@pytest.mark.integration
def test_deeply_nested_json_answers_400_and_logs_no_traceback(web: WebServer) -> None:
    offset = web.log.stat().st_size
    body = b"[" * 30_000
    with connect(web) as sock:
        sock.sendall(head("POST", TOKEN_PATH, "Content-Type: application/json", f"Content-Length: {len(body)}"))
        sock.sendall(body)
        status, _, answer = read_answer(sock)
    assert (status, error_code(answer)) == (400, "JSON_TOO_DEEP")
    wait_until(lambda: TOKEN_PATH in log_since(web, offset), 10, "the access log line, written after the answer")
    log = log_since(web, offset)
    assert "Traceback" not in log and "RecursionError" not in log, log


@pytest.mark.integration
def test_an_unrouted_websocket_path_is_refused_without_a_traceback(web: WebServer) -> None:
    offset = web.log.stat().st_size
    upgrade = head(
        "GET",
        "/no/such/socket",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Origin: http://127.0.0.1",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    )
    with connect(web) as sock:
        sock.sendall(upgrade)
        status, _, _ = read_answer(sock)
    assert status == 403
    wait_until(lambda: "/no/such/socket" in log_since(web, offset), 10, "the access log line of the refusal")
    log = log_since(web, offset)
    assert "Traceback" not in log and "No route found" not in log, log


# --- The ASGI application's own limit ---------------------------------------------------------


def http_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": TOKEN_PATH,
        "query_string": b"",
        "headers": [(b"host", b"localhost"), *headers],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 1),
    }


def test_the_application_refuses_a_declared_length_over_the_limit_before_any_body_arrives() -> None:
    async def scenario() -> tuple[int, bytes]:
        app = ApplicationCommunicator(application, http_scope((b"content-length", b"99999999999999999999")))
        start = await app.receive_output(5)
        body = await app.receive_output(5)
        return start["status"], body["body"]

    status, body = async_to_sync(scenario)()
    assert (status, error_code(body)) == (413, "PAYLOAD_TOO_LARGE")


def test_the_application_answers_408_for_a_body_that_stops_arriving(settings: Any) -> None:
    settings.TECHNIC_BODY_TIMEOUT = 1

    async def scenario() -> tuple[int, bytes, float]:
        app = ApplicationCommunicator(application, http_scope((b"content-length", b"100")))
        await app.send_input({"type": "http.request", "body": b"{", "more_body": True})
        started = time.monotonic()
        start = await app.receive_output(10)
        body = await app.receive_output(5)
        return start["status"], body["body"], time.monotonic() - started

    status, body, waited = async_to_sync(scenario)()
    assert (status, error_code(body)) == (408, "BODY_TIMEOUT")
    assert 0.5 < waited < 8


def test_the_application_gets_the_body_in_one_message_then_the_disconnect() -> None:
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.extend([await receive(), await receive()])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> int:
        communicator = ApplicationCommunicator(BodyLimitMiddleware(app), http_scope())
        await communicator.send_input({"type": "http.request", "body": b"ab", "more_body": True})
        await communicator.send_input({"type": "http.request", "body": b"cd", "more_body": False})
        await communicator.send_input({"type": "http.disconnect"})
        start = await communicator.receive_output(5)
        await communicator.receive_output(5)
        return int(start["status"])

    assert async_to_sync(scenario)() == 204
    assert received == [{"type": "http.request", "body": b"abcd", "more_body": False}, {"type": "http.disconnect"}]
