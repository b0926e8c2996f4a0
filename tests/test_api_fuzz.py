"""Property-based fuzz of every operation in the OpenAPI schema (schemathesis, positive and
negative cases), in process through Django's WSGI application: no answer is a 500, and every
answer's status, content type and body are the ones the schema documents.

The caller owns real scans (two completed ones, with results and skips, and a pending one), and
generated scan ids are often replaced by theirs, so results, diff, progress and cancel answer
with data rather than only 404. Left out: the Server-Sent Events routes, whose answer for a
scan that has not finished is a stream that does not end (a pending scan never does here).
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import strategies as st
from rest_framework.throttling import SimpleRateThrottle
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.config import ScanConfig
from scanner import services, tasks
from scanner.models import Scan, ScanStatus
from scanner.workflow import build_workflow
from tests.support.accounts import user_with_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

FUZZER = "fuzzer"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def finished_scan(owner: Any, **config: Any) -> Scan:
    """A scan run to completion in this process (the real stage tasks, applied eagerly)."""
    scan = services.scan_create(owner=owner, config=ScanConfig(**config))
    build_workflow(scan.id, scan.n_batches).apply(app=tasks.load_universe.app)
    scan.refresh_from_db()
    assert scan.status == ScanStatus.COMPLETED, scan.error_message
    return scan


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch, settings: Any) -> str:
    """The caller's token; they own two completed scans and a pending one."""
    # Nothing consumes the broker here: fuzzed starts are recorded, never enqueued, and a
    # synchronous start answers 202 at once instead of waiting for a worker.
    monkeypatch.setattr(services, "scan_start", lambda scan: None)
    settings.TECHNIC_SYNC_SCAN_TIMEOUT = 0
    settings.TECHNIC_MAX_ACTIVE_SCANS = 10_000
    # Hundreds of requests a minute are the point here (test_api_platform tests throttling).
    for scope in list(SimpleRateThrottle.THROTTLE_RATES):
        monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, None)
    user, key = user_with_token(FUZZER)
    finished_scan(user, max_symbols=40)
    rated = finished_scan(user, max_symbols=40, min_tech_rating=55.0)
    assert rated.results.exists() and rated.skips.exists()
    services.scan_create(owner=user, config=ScanConfig(max_symbols=5))
    return key


def _schema() -> schemathesis.BaseSchema:
    """The schema /api/schema/ serves, generated here at collection time (a request would need the
    throttles' Redis, which the fixtures start later), called through Django's WSGI application."""
    document = OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
    loaded = schemathesis.openapi.from_dict(json.loads(document))
    loaded.app = get_wsgi_application()
    return loaded.exclude(path_regex=r"^/scan/(sse|stream)/")


schema = _schema()


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Each path parameter as generated, or the id of one of the caller's scans."""
    if not path_parameters:
        return st.just(path_parameters)
    scan_ids = [str(i) for i in Scan.objects.filter(owner__username=FUZZER).values_list("id", flat=True)]
    return st.fixed_dictionaries({name: st.sampled_from([value, *scan_ids]) for name, value in path_parameters.items()})


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    # The caller and their scans are meant to be shared by all examples.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case, token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
