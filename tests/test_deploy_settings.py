"""Production settings from the environment: ``manage.py check --deploy`` is clean with the
HTTPS variables set, malformed values stop the start, and a session POST through an HTTPS
proxy passes the CSRF check."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils.crypto import get_random_string

from tests.api.support import pending_scan
from tests.support.processes import REPO, RedisServer, WebServer, database_url

ORIGIN = "https://technic.example.com"
PRODUCTION = {
    "DJANGO_SECRET_KEY": get_random_string(64),
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "technic.example.com,127.0.0.1",
}
HTTPS = {
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "DJANGO_CSRF_TRUSTED_ORIGINS": ORIGIN,
    "DJANGO_HTTPS": "true",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
}


def clean_environ() -> dict[str, str]:
    """This process's environment without any Django or technic setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TECHNIC_"))}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def warnings_of(result: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"\(security\.(W\d{3})\)", result.stdout + result.stderr))


def test_check_deploy_is_clean_with_the_https_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, **HTTPS})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_them() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode != 0
    assert {"W004", "W008", "W012", "W016"} <= warnings_of(result), result.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto", "HTTP_X_FORWARDED_PROTO,https"),
        ("DJANGO_SECURE_PROXY_SSL_HEADER", "HTTP_X_FORWARDED_PROTO,https,http", "HTTP_X_FORWARDED_PROTO,https"),
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "technic.example.com", "scheme://host"),
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "https://technic.example.com/app", "scheme://host"),
        ("DJANGO_HTTPS", "yes please", "not a boolean"),
        ("DJANGO_SECURE_HSTS_SECONDS", "a year", "not an integer"),
        ("TECHNIC_METRICS_TOKEN", "short", "at least 32 characters"),
        ("TECHNIC_SCAN_RETENTION_DAYS", "-1", "at least 0"),
        ("TECHNIC_STAGE_WEIGHTS", "universe_loading=0.5,data_fetching=0.5", "must name exactly universe_loading"),
        ("TECHNIC_STAGE_WEIGHTS", "universe_loading=1", "must name exactly"),
        ("TECHNIC_CACHE_TTL_RESULTS", "0", "at least 1"),
        ("TECHNIC_DATA_PROVIDER", "yahoo", "must be one of: demo, parquet, csv, polygon"),
        ("TECHNIC_MARKETDATA_UPDATE_AT", "8.30pm", "must be a New York time HH:MM"),
        ("TECHNIC_MARKETDATA_UPDATE_AT", "25:00", "must be a New York time HH:MM"),
    ],
)
def test_a_malformed_setting_stops_the_start_and_says_how_to_write_it(name: str, value: str, says: str) -> None:
    result = manage("check", env={**PRODUCTION, name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and says in result.stderr and name in result.stderr


def test_polygon_without_its_key_stops_the_start() -> None:
    result = manage("check", env={**PRODUCTION, "TECHNIC_DATA_PROVIDER": "polygon", "POLYGON_API_KEY": ""})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "needs POLYGON_API_KEY" in result.stderr


# --- A session POST through an HTTPS proxy -------------------------------------------------


@pytest.fixture
def behind_proxy(redis_server: RedisServer, tmp_path: Path) -> Iterator[WebServer]:
    """daphne as it runs behind a TLS-terminating proxy, with the HTTPS settings."""
    env = {**PRODUCTION, **HTTPS, "REDIS_URL": redis_server.url, "DATABASE_URL": database_url(connection.settings_dict)}
    server = WebServer(env, tmp_path / "daphne.log")
    server.start()
    yield server
    server.stop()


def proxied(
    server: WebServer, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    """A request as nginx forwards an HTTPS one by default: X-Forwarded-Proto https, and the
    upstream's address as Host (so the browser's Origin differs from it)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(
        method,
        path,
        body=body.encode(),
        headers={"Host": f"127.0.0.1:{server.port}", "X-Forwarded-Proto": "https", **(headers or {})},
    )
    return conn.getresponse()


def cookies_of(response: http.client.HTTPResponse) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return jar


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_session_post_through_an_https_proxy_passes_the_csrf_check(behind_proxy: WebServer) -> None:
    user = User.objects.create_user("analyst", password="pw")
    scan = pending_scan(user)

    page = proxied(behind_proxy, "GET", "/accounts/login/")
    assert page.status == 200
    csrf = cookies_of(page)["csrftoken"]

    form = urllib.parse.urlencode({"username": "analyst", "password": "pw", "csrfmiddlewaretoken": csrf.value})
    login = proxied(
        behind_proxy,
        "POST",
        "/accounts/login/",
        form,
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN, "Cookie": f"csrftoken={csrf.value}"},
    )
    assert login.status == 302, login.read()[:500]
    session = cookies_of(login)["sessionid"]
    assert session["secure"] and session["httponly"]
    csrf = cookies_of(login).get("csrftoken", csrf)  # signing in rotates the CSRF token

    jar = f"csrftoken={csrf.value}; sessionid={session.value}"
    cancel = proxied(
        behind_proxy,
        "POST",
        f"/scan/cancel/{scan.id}",
        headers={"Origin": ORIGIN, "Cookie": jar, "X-CSRFToken": csrf.value},
    )
    assert cancel.status == 202, cancel.read()[:500]

    foreign = proxied(
        behind_proxy,
        "POST",
        f"/scan/cancel/{scan.id}",
        headers={"Origin": "https://evil.example", "Cookie": jar, "X-CSRFToken": csrf.value},
    )
    assert foreign.status == 403 and b"CSRF_FAILED" in foreign.read()

    assert csrf["secure"] and page.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = proxied(behind_proxy, "GET", "/accounts/login/", headers={"X-Forwarded-Proto": "http"})
    assert plain.status == 301 and plain.headers["Location"].startswith("https://")
    probe = proxied(behind_proxy, "GET", "/health", headers={"X-Forwarded-Proto": "http"})
    assert probe.status == 200  # probes and the Prometheus scrape may stay on plain HTTP
