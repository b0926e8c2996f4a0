"""Helpers of the scan endpoint tests: clients, finished scans made through the ORM, the error
envelope and the OpenAPI schema the views declare."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings
from rest_framework.test import APIClient

from engine import ENGINE_VERSION
from market.sources import DataSource, provider_for
from scanner.models import Scan
from tests.support.factories import ScanFactory, ScanResultFactory, ScanSkipFactory

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


def client_for(user_and_token: tuple[User, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user_and_token[1]}")
    return client


def finished_scan(owner: User | None, rows: list[dict[str, Any]], status: str = "completed", **fields: Any) -> Scan:
    scan = ScanFactory.create(
        finished=True,
        owner=owner,
        status=status,
        metrics={"engine_version": ENGINE_VERSION, "results": len(rows), "skipped": 1},
        **fields,
    )
    for r in rows:
        ScanResultFactory.create(scan=scan, symbol=r["symbol"], row=r)
    ScanSkipFactory.create(scan=scan, symbol="ZZZZ")
    return scan


def pending_scan(owner: User | None, status: str = "pending") -> Scan:
    return ScanFactory.create(owner=owner, status=status)


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "suggestions", "details"} and error["message"]
    return dict(error)


@functools.cache
def openapi() -> dict[str, Any]:
    """The schema drf-spectacular generates from the views, as OpenAPI 3.1 (JSON Schema 2020-12)."""
    with patched_settings({"OAS_VERSION": "3.1.0"}):
        return dict(SchemaGenerator().get_schema(request=None, public=True))


def streamed_text(response: Any) -> str:
    """The body of a streaming answer (read once), such as the CSV export."""

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    if response.is_async:
        return async_to_sync(read)().decode()
    return b"".join(response.streaming_content).decode()


def assert_documented(response: Any, method: str, path: str, streamed: str | None = None) -> None:
    """The response's status and media type are declared for the operation, and its body
    (``streamed``: the text already read from a streaming answer) matches the declared schema."""
    declared = openapi()["paths"][path][method]["responses"]
    assert str(response.status_code) in declared, f"{response.status_code} undeclared for {method} {path}"
    media = response["Content-Type"].split(";")[0]
    schema = declared[str(response.status_code)]["content"][media]["schema"]
    if streamed is not None:
        body: Any = streamed
    else:
        body = response.content.decode() if media == "text/csv" else response.json()
    jsonschema.Draft202012Validator({**schema, "components": openapi()["components"]}).validate(body)


def demo_symbols(n: int) -> list[str]:
    return [i.symbol for i in provider_for(DataSource.from_settings()).instruments()[:n]]


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (already in rank order) as the API answers them: each with its ``screen.rank``."""
    return [{**r, "screen": {**r["screen"], "rank": i}} for i, r in enumerate(rows, 1)]
