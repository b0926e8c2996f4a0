"""Fixtures of the scan endpoint tests."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from engine.config import ScanConfig
from infra.throttles import RateWindows, WindowThrottle
from market.sources import DataSource, provider_for
from progress.tracker import ProgressTracker
from scanner import services
from scanner.runner import run_scan
from tests.api.support import client_for


@pytest.fixture(autouse=True)
def fresh_throttle_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no request counted against its throttles."""
    monkeypatch.setattr(WindowThrottle, "windows", RateWindows(key_prefix=f"throttle-{uuid.uuid4()}"))


@pytest.fixture(autouse=True)
def enqueued(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the scans whose workflow was enqueued. Without the ``workers`` fixture nothing
    reaches the broker; with it, workflows really run."""
    started: list[str] = []
    if "workers" not in request.fixturenames:
        monkeypatch.setattr(services, "scan_start", lambda scan: started.append(str(scan.id)))
    return started


@pytest.fixture
def api(owner: tuple[User, str]) -> APIClient:
    return client_for(owner)


@pytest.fixture(scope="module")
def demo_rows() -> list[dict[str, Any]]:
    """Real result rows of a few demo symbols, computed in-process."""
    report = run_scan(ScanConfig(max_symbols=11), provider_for(DataSource("demo")), ProgressTracker("rows"))
    assert len(report.rows) >= 5
    return report.rows
