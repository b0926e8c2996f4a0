"""Operations against real processes: readiness follows Redis, detailed health sees workers
come and go, /metrics moves after a scan on a worker, and a scan's log lines carry its id."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings

from engine.config import ScanConfig
from scanner.services import scan_create
from technic_project import health
from technic_project.celery import app
from tests.support.processes import REPO, RedisServer, Workers, free_port, stop_group
from tests.support.waits import wait_finished, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

METRICS_TOKEN = "p" * 40
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}  # as Prometheus scrapes


@pytest.fixture
def own_redis(tmp_path: Path, redis_server: RedisServer) -> Iterator[RedisServer]:
    """A redis-server of this test's own as REDIS_URL and broker, so stopping it harms no other test."""
    server = RedisServer(tmp_path)
    server.start()
    broker = app.conf.broker_url
    app.conf.broker_url = server.url
    try:
        with override_settings(REDIS_URL=server.url):
            yield server
    finally:
        app.conf.broker_url = broker
        server.stop()


def test_liveness_needs_nothing_and_readiness_follows_redis(own_redis: RedisServer) -> None:
    client = Client()
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"

    own_redis.stop()
    down = client.get("/health/ready")
    assert down.status_code == 503
    assert down.json()["status"] == "not_ready" and set(down.json()["down"]) == {"redis", "broker"}
    assert client.get("/health").status_code == 200

    own_redis.start()
    assert client.get("/health/ready").status_code == 200


def worker_names(client: Client) -> list[str]:
    return list(client.get("/health/detailed", headers=OPERATOR).json()["components"]["workers"]["workers"])


@override_settings(TECHNIC_METRICS_TOKEN=METRICS_TOKEN)
def test_detailed_health_reports_each_component_and_a_worker_that_stopped(workers: Workers, tmp_path: Path) -> None:
    client = Client()
    # The workers' ping is refreshed every few seconds, hence the waits.
    settle = health.WORKERS_FRESH_SECONDS + 10
    extra = Workers(dict(workers.env), tmp_path / "w2.log", concurrency=1, name="w2")
    extra.start()
    try:
        wait_until(lambda: any(n.startswith("w2@") for n in worker_names(client)), settle, "w2 in the ping", poll=0.5)
        assert any(n.startswith("w1@") for n in worker_names(client))
    finally:
        extra.stop()
    wait_until(lambda: not any(n.startswith("w2@") for n in worker_names(client)), settle, "w2 gone", poll=0.5)
    response = client.get("/health/detailed", headers=OPERATOR)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "healthy", body
    names = body["components"]["workers"]["workers"]
    assert any(n.startswith("w1@") for n in names) and not any(n.startswith("w2@") for n in names)
    components = body["components"]
    assert {components[c]["status"] for c in ("database", "redis", "broker", "workers", "cache")} == {"up"}
    provider = components["data_provider"]
    assert (provider["name"], provider["status"], provider["synthetic"]) == ("demo", "up", True)
    assert provider["circuit_breaker"] == "not_applicable"
    assert components["cache"]["badge"] in {"excellent", "good", "poor", "idle"}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@override_settings(TECHNIC_METRICS_TOKEN=METRICS_TOKEN)
def test_metrics_move_after_a_scan_that_ran_on_a_worker(workers: Workers) -> None:
    client = Client(headers=OPERATOR)
    before = client.get("/metrics").content.decode()
    scan = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=60)).id)
    assert scan.status == "completed"
    finished = 'technic_scans_finished_total{status="completed"}'
    # Finalization records the metrics just after the status, so give it a moment.
    wait_until(
        lambda: metric(client.get("/metrics").content.decode(), finished) > metric(before, finished),
        10,
        "the finished scan in /metrics",
    )
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    after = response.content.decode()
    for name, delta in (
        ("technic_scans_started_total", 1),
        ('technic_scans_finished_total{status="completed"}', 1),
        ("technic_symbols_scanned_total", 60),
        ("technic_scan_duration_seconds_count", 1),
        ('technic_stage_duration_seconds_count{stage="symbol_scanning"}', 1),
        ('technic_cache_hits_total{kind="bars"}', None),
    ):
        if delta is None:
            assert name in after
        else:
            assert metric(after, name) - metric(before, name) == delta, name
    assert "# HELP technic_scans_active Scans pending or running now." in after


def test_every_log_line_of_a_scans_work_carries_its_id(workers: Workers) -> None:
    start = workers.log.stat().st_size
    scan = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=60), batch_size=20).id)

    def logged() -> str:
        with workers.log.open(errors="replace") as fh:
            fh.seek(start)
            return fh.read()

    wait_until(lambda: f"scan {scan.id} completed in" in logged(), 10, "the end of finalization in the log")
    lines = logged().splitlines()
    mine = [line for line in lines if str(scan.id) in line]
    untagged = [line for line in mine if f"[scan={scan.id}]" not in line and "received" not in line]
    assert not untagged, untagged[:5]
    tagged = [line for line in lines if f"[scan={scan.id}]" in line]
    for stage in ("universe_loading", "data_fetching", "symbol_scanning", "finalization"):
        assert any(f"{stage} started" in line for line in tagged), stage
    assert sum("finished in" in line for line in tagged) == 3  # finalization ends with the scan
    assert any(re.search(r"scan \S+ completed in [\d.]+ s", line) for line in tagged)
    assert any("Task scanner.tasks.scan_batch[" in line and "succeeded" in line for line in tagged)


def run_flower(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The Procfile's ``flower`` process, as honcho starts it."""
    bin_dir = str(Path(sys.executable).parent)
    return subprocess.Popen(
        [f"{bin_dir}/honcho", "start", "-f", "Procfile", "flower"],
        cwd=REPO,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_flower_from_the_procfile_refuses_to_start_without_credentials_and_asks_for_them(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    bare = run_flower({"FLOWER_BASIC_AUTH": ""}, tmp_path / "bare.log")
    assert bare.wait(timeout=30) != 0
    assert "set FLOWER_BASIC_AUTH" in (tmp_path / "bare.log").read_text()

    port = free_port()
    env = {"FLOWER_BASIC_AUTH": "ops:s3cret", "FLOWER_PORT": str(port), "REDIS_URL": redis_server.url}
    flower = run_flower(env, tmp_path / "flower.log")
    try:
        url = f"http://127.0.0.1:{port}/"

        def answers() -> bool:
            try:
                urllib.request.urlopen(url, timeout=1)
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False
            return True

        wait_until(answers, 30, "flower to listen", poll=0.2)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(
            url, headers={"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()}
        )
        assert urllib.request.urlopen(request, timeout=5).status == 200
    finally:
        stop_group(flower)
