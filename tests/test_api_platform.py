"""The API platform: the token endpoint, error answers in the one JSON shape whoever produces them
(DRF, Django, the middleware), body size limit, throttling, and the OpenAPI schema and docs.

Tests marked ``urls(__name__)`` run against this module's urlconf: the real one plus a few
test-only views (one that raises, one DRF view for session writes, one GET-only Django view).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.urls import path
from django.views.decorators.http import require_GET
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from infra.throttles import RateWindows, WindowThrottle
from scanner.models import Scan
from technic_project import urls as root_urls
from technic_project.asgi import application
from tests.support.accounts import user_with_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

TOKEN_URL = "/api/auth/token/"


def explode(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internals")


class ExplodingApiView(APIView):
    permission_classes = (AllowAny,)

    def get(self, request: Request) -> Response:
        raise RuntimeError("secret internals")


class SessionWriteView(APIView):
    def post(self, request: Request) -> Response:
        return Response({"written": True})


@require_GET
def get_only(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [
    path("test/explode", explode),
    path("test/explode-api", ExplodingApiView.as_view()),
    path("test/session-write", SessionWriteView.as_view()),
    path("test/get-only", get_only),
    *root_urls.urlpatterns,
]
handler404, handler500 = root_urls.handler404, root_urls.handler500


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The ``error`` object of a JSON error answer with ``status``; fails on anything else."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "suggestions", "details"}
    return body["error"]


def post_json(client: Client, url: str, body: Any, **extra: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", **extra)


@pytest.fixture(autouse=True)
def no_requests_counted_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test client's throttle counters start empty (they live in the session's Redis, shared
    by every test that ran in the last minute)."""
    monkeypatch.setattr(WindowThrottle, "windows", RateWindows(key_prefix=f"throttle-{uuid.uuid4()}"))


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="correct horse")


# --- POST /api/auth/token/ -------------------------------------------------------------------


def test_a_user_gets_a_token_for_username_and_password_and_the_same_one_again(alice: User) -> None:
    first = post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"})
    assert first.status_code == 200
    token = first.json()["token"]
    assert token == Token.objects.get(user=alice).key
    again = post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"})
    assert again.json() == first.json() and again.json()["token"] == token


def test_the_token_authenticates_api_calls(alice: User) -> None:
    token = post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"}).json()["token"]
    scan = Scan.objects.create(owner=alice, config={}, data_provider="demo")
    response = Client().get(f"/scan/progress/{scan.id}", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert response.json()["scan_id"] == str(scan.id)


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": "correct horse"},
        {"username": "alice", "password": "correct horse "},
    ],
)
def test_wrong_credentials_answer_400_invalid_credentials(alice: User, credentials: dict[str, str]) -> None:
    error = error_of(post_json(Client(), TOKEN_URL, credentials), 400)
    assert error["code"] == "INVALID_CREDENTIALS"
    assert not Token.objects.exists()


def test_an_inactive_user_gets_no_token(alice: User) -> None:
    User.objects.filter(pk=alice.pk).update(is_active=False)
    error = error_of(post_json(Client(), TOKEN_URL, {"username": "alice", "password": "correct horse"}), 400)
    assert error["code"] == "INVALID_CREDENTIALS"


def test_missing_fields_answer_400_validation_error_naming_them(alice: User) -> None:
    error = error_of(post_json(Client(), TOKEN_URL, {"username": "alice"}), 400)
    assert error["code"] == "VALIDATION_ERROR"
    assert set(error["details"]["fields"]) == {"password"}
    error = error_of(post_json(Client(), TOKEN_URL, {}), 400)
    assert set(error["details"]["fields"]) == {"username", "password"}


def test_a_body_that_is_not_an_object_answers_400_validation_error() -> None:
    error = error_of(post_json(Client(), TOKEN_URL, ["alice", "correct horse"]), 400)
    assert error["code"] == "VALIDATION_ERROR"


def test_a_form_encoded_body_answers_415(alice: User) -> None:
    response = Client().post(TOKEN_URL, {"username": "alice", "password": "correct horse"})
    assert error_of(response, 415)["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize(
    "body",
    [
        '{"username": "alice", "password": ',
        '{"username": "alice", "password": NaN}',
        '{"username": "alice", "password": Infinity}',
        b'{"username": "\xff\xfe", "password": "x"}',
    ],
    ids=["truncated", "NaN", "Infinity", "not-utf8"],
)
def test_malformed_json_answers_400_malformed_json(body: str | bytes) -> None:
    response = Client().post(TOKEN_URL, body, content_type="application/json")
    assert error_of(response, 400)["code"] == "MALFORMED_JSON"


def test_the_token_endpoint_asks_no_csrf_token_even_with_a_session(alice: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    response = post_json(browser, TOKEN_URL, {"username": "alice", "password": "correct horse"})
    assert response.status_code == 200


def test_get_on_the_token_endpoint_answers_405_with_allow() -> None:
    response = Client().get(TOKEN_URL)
    assert error_of(response, 405)["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in response["Allow"]


# --- Body size -------------------------------------------------------------------------------


def test_an_oversized_body_answers_413_and_starts_no_scan(settings: Any) -> None:
    _, token = user_with_token("bob")
    body = json.dumps({"max_symbols": 5, "padding": "x" * settings.TECHNIC_MAX_BODY_BYTES})
    response = Client().post("/scan/start", body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    error = error_of(response, 413)
    assert (error["code"], error["details"]["limit_bytes"]) == ("PAYLOAD_TOO_LARGE", settings.TECHNIC_MAX_BODY_BYTES)
    assert not Scan.objects.exists()


def test_a_body_at_the_limit_is_read(alice: User, settings: Any) -> None:
    body = json.dumps({"username": "alice", "password": "correct horse"})
    body += " " * (settings.TECHNIC_MAX_BODY_BYTES - len(body))
    assert Client().post(TOKEN_URL, body, content_type="application/json").status_code == 200


def asgi_post(path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    """POST through the ASGI application, the body in ``chunks`` (as a chunked upload arrives)."""

    async def scenario() -> tuple[int, dict[str, Any]]:
        scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": headers}
        scope |= {"http_version": "1.1", "scheme": "http", "server": ("localhost", 80), "client": ("127.0.0.1", 1)}
        app = ApplicationCommunicator(application, scope)
        for i, chunk in enumerate(chunks):
            await app.send_input({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
        start = await app.receive_output(10)
        body = await app.receive_output(10)
        return start["status"], json.loads(body["body"])

    return async_to_sync(scenario)()


def test_a_body_without_content_length_is_held_to_the_limit_too(settings: Any) -> None:
    _, token = user_with_token("bob")
    chunk = b" " * 8192
    chunks = [b'{"max_symbols": 5', *[chunk] * (settings.TECHNIC_MAX_BODY_BYTES // len(chunk) + 1), b"}"]
    headers = [
        (b"host", b"localhost"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Token {token}".encode()),
    ]
    status, body = asgi_post("/scan/start", chunks, headers)
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert not Scan.objects.exists()


def test_a_content_length_that_is_not_a_number_answers_400() -> None:
    status, body = asgi_post(TOKEN_URL, [b"{}"], [(b"host", b"localhost"), (b"content-length", b"two")])
    assert (status, body["error"]["code"]) == (400, "BAD_REQUEST")


# --- Errors outside the views ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["/no/such/path", "/scan/results/not-a-uuid", "/scan/progress/123"])
def test_unknown_paths_and_malformed_ids_answer_json_404(url: str) -> None:
    assert error_of(Client().get(url), 404)["code"] == "NOT_FOUND"


def test_a_host_not_allowed_answers_json_400() -> None:
    assert error_of(Client().get("/health", HTTP_HOST="evil.example"), 400)["code"] == "BAD_REQUEST"


@pytest.mark.urls(__name__)
def test_a_wrong_method_on_a_django_view_answers_json_405_with_allow() -> None:
    response = Client().post("/test/get-only")
    assert error_of(response, 405)["code"] == "METHOD_NOT_ALLOWED"
    assert response["Allow"] == "GET"


def test_a_session_post_without_csrf_token_to_a_django_view_answers_403_csrf_failed() -> None:
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "a", "password": "b"})
    assert error_of(response, 403)["code"] == "CSRF_FAILED"


@pytest.mark.urls(__name__)
def test_a_session_post_without_csrf_token_to_an_api_view_answers_403_csrf_failed(alice: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert error_of(post_json(browser, "/test/session-write", {}), 403)["code"] == "CSRF_FAILED"
    browser.get("/admin/login/")  # sets the csrftoken cookie
    csrf = browser.cookies["csrftoken"].value
    assert post_json(browser, "/test/session-write", {}, HTTP_X_CSRFTOKEN=csrf).json() == {"written": True}


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("url", ["/test/explode", "/test/explode-api"])
def test_a_failing_view_answers_500_server_error_with_a_reference_and_no_trace(url: str, settings: Any) -> None:
    assert settings.DEBUG is False
    response = Client(raise_request_exception=False).get(url)
    error = error_of(response, 500)
    assert error["code"] == "SERVER_ERROR"
    assert len(error["details"]["reference"]) == 12
    text = response.content.decode()
    assert "Traceback" not in text
    assert "secret internals" not in text
    assert "RuntimeError" not in text


# --- Throttling ------------------------------------------------------------------------------


def test_anonymous_requests_over_the_rate_answer_429_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AnonRateThrottle.THROTTLE_RATES, "anon", "2/min")
    client = Client()
    for _ in range(2):
        assert error_of(post_json(client, TOKEN_URL, {}), 400)["code"] == "VALIDATION_ERROR"
    response = post_json(client, TOKEN_URL, {})
    error = error_of(response, 429)
    assert error["code"] == "THROTTLED"
    assert 0 < int(response["Retry-After"]) <= 60
    assert error["details"]["retry_after_seconds"] == int(response["Retry-After"])


# --- OpenAPI ---------------------------------------------------------------------------------


def test_the_schema_is_public_openapi_3_covering_the_contracts_paths() -> None:
    response = Client().get("/api/schema/?format=json", HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "technic API"
    assert {
        "/api/auth/token/",
        "/scan/start",
        "/scan/progress/{scan_id}",
        "/scan/results/{scan_id}",
        "/scan/cancel/{scan_id}",
        "/scan/active",
        "/scan/history",
        "/scan/diff/{scan_id}/{other_id}",
        "/scan",
        "/scan/sse/{scan_id}",
        "/scan/stream/{scan_id}",
    } <= set(schema["paths"])
    assert {"tokenAuth", "cookieAuth", "tokenQuery"} <= set(schema["components"]["securitySchemes"])
    assert "text/event-stream" in schema["paths"]["/scan/sse/{scan_id}"]["get"]["responses"]["200"]["content"]


def test_every_operation_documents_its_error_answers_with_the_error_schema() -> None:
    schema = Client().get("/api/schema/?format=json").json()
    error_ref = {"$ref": "#/components/schemas/Error"}
    for url, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {code: r for code, r in operation["responses"].items() if code.startswith(("4", "5"))}
            assert errors, f"{method} {url} documents no error"
            for code, answer in errors.items():
                assert answer["content"]["application/json"]["schema"] == error_ref, f"{method} {url} {code}"
            if operation.get("security") and {} not in operation["security"]:
                assert "401" in errors, f"{method} {url}"


def test_the_docs_page_uses_the_bundled_swagger_ui() -> None:
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn.jsdelivr.net" not in page
    assert "/api/schema/" in page
