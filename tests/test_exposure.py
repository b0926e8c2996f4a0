"""What each caller may see of the server's internals: probes and anonymous callers get
statuses, not host names, addresses or counters; staff and the metrics token get the details;
users never see server paths or the cache's Redis address."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from tests.api.support import client_for, finished_scan
from tests.support.accounts import user_with_token
from tests.support.processes import RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

METRICS_TOKEN = "m" * 40
DETAILED_COMPONENTS = {"database", "redis", "broker", "workers", "data_provider", "market_data", "cache"}


def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("operator", password="pw", is_staff=True))
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def only_statuses(components: dict[str, Any]) -> bool:
    return all(set(component) == {"status"} for component in components.values())


# --- /health/ready and /health/detailed ------------------------------------------------------


def test_readiness_answers_anyone_with_statuses_only() -> None:
    response = Client().get("/health/ready")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ready" and body["down"] == []
    assert body["components"] == {name: {"status": "up"} for name in ("database", "redis", "broker")}


def test_anonymous_detailed_health_has_the_statuses_but_no_names_timings_or_errors() -> None:
    body = Client().get("/health/detailed").json()
    assert body["status"] in {"healthy", "degraded"}
    assert set(body["components"]) == DETAILED_COMPONENTS and only_statuses(body["components"])


@override_settings(TECHNIC_METRICS_TOKEN=METRICS_TOKEN)
def test_staff_and_the_metrics_token_see_every_detail_of_detailed_health() -> None:
    for client, headers in ((staff_client(), {}), (Client(), bearer(METRICS_TOKEN))):
        components = client.get("/health/detailed", headers=headers).json()["components"]
        assert set(components) == DETAILED_COMPONENTS
        assert components["database"]["vendor"] and components["database"]["writable"] is True
        assert "workers" in components["workers"] and "name" in components["data_provider"]
        assert "badge" in components["cache"]


@override_settings(TECHNIC_METRICS_TOKEN=METRICS_TOKEN)
def test_a_wrong_token_or_a_user_who_is_not_staff_gets_statuses_only() -> None:
    analyst = Client()
    analyst.force_login(User.objects.create_user("analyst", password="pw"))
    for client, headers in ((Client(), bearer("x" * 40)), (analyst, {}), (Client(), {"Authorization": "Token x"})):
        assert only_statuses(client.get("/health/detailed", headers=headers).json()["components"])


# --- /metrics --------------------------------------------------------------------------------


@override_settings(TECHNIC_METRICS_TOKEN=METRICS_TOKEN)
def test_metrics_need_the_bearer_token_or_a_staff_session() -> None:
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "NOT_AUTHENTICATED"
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"technic_" not in anonymous.content
    assert Client().get("/metrics", headers=bearer(METRICS_TOKEN[:-1] + "x")).status_code == 401

    analyst = Client()
    analyst.force_login(User.objects.create_user("analyst", password="pw"))
    refused = analyst.get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "PERMISSION_DENIED"

    for response in (Client().get("/metrics", headers=bearer(METRICS_TOKEN)), staff_client().get("/metrics")):
        assert response.status_code == 200 and b"# HELP technic_scans_started" in response.content


@override_settings(TECHNIC_METRICS_TOKEN="")
def test_without_a_metrics_token_configured_only_staff_read_metrics() -> None:
    for headers in ({}, bearer(""), {"Authorization": "Bearer"}):
        response = Client().get("/metrics", headers=headers)
        assert response.status_code == 401 and "TECHNIC_METRICS_TOKEN" in " ".join(
            response.json()["error"]["suggestions"]
        )
    assert staff_client().get("/metrics").status_code == 200


# --- GET /api/cache/stats --------------------------------------------------------------------


def test_cache_statistics_show_where_the_cache_is_to_staff_only(redis_server: RedisServer) -> None:
    body = client_for(user_with_token("analyst")).get("/api/cache/stats").json()
    assert body["available"] is True and body["url"] is None
    staff = client_for(user_with_token("operator", is_staff=True)).get("/api/cache/stats").json()
    assert staff["url"] == redis_server.url


@override_settings(CACHE_REDIS_URL="redis://:s3cret@127.0.0.1:1/0")
def test_a_down_cache_tells_users_so_without_its_address_or_password() -> None:
    body = client_for(user_with_token("analyst")).get("/api/cache/stats").json()
    assert body["status"] == "unavailable" and body["url"] is None
    assert "127.0.0.1" not in body["error"] and "s3cret" not in str(body)
    staff = client_for(user_with_token("operator", is_staff=True)).get("/api/cache/stats").json()
    assert staff["url"] == "redis://***@127.0.0.1:1/0" and "127.0.0.1:1" in staff["error"]
    assert "s3cret" not in str(staff)


# --- The manifest of GET /scan/results -------------------------------------------------------


def test_the_manifest_names_data_files_without_server_paths_except_to_staff() -> None:
    paths = {"data_path": "/srv/market/prices.parquet", "universe_path": "/srv/market/constituents.csv"}
    for username, is_staff, expected in (
        ("analyst", False, {"data_path": "prices.parquet", "universe_path": "constituents.csv"}),
        ("operator", True, paths),
    ):
        user, token = user_with_token(username, is_staff=is_staff)
        scan = finished_scan(user, [], **paths)
        body = client_for((user, token)).get(f"/scan/results/{scan.id}").json()
        assert body["scan"]["manifest"]["data_source"] == {"provider": "demo", **expected}
        assert "/srv/" not in str(body) or is_staff
