"""Rows the tests make through the ORM: users, scans, their results and skips (factory_boy)."""

from __future__ import annotations

from datetime import date
from typing import Any

import factory
from django.contrib.auth.models import User
from django.utils import timezone

from engine.config import ScanConfig
from scanner.models import Scan, ScanResult, ScanSkip

PASSWORD = "a-long-test-password"
DEMO_AS_OF = date(2024, 12, 31)


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)


class ScanFactory(factory.django.DjangoModelFactory[Scan]):
    """A pending scan of the demo market with the default settings; ``finished=True`` (with a
    ``status``) makes one that ran."""

    class Meta:
        model = Scan

    config = factory.LazyFunction(lambda: ScanConfig().as_dict())
    data_provider = "demo"

    class Params:
        finished = factory.Trait(
            status="completed",
            synthetic=True,
            as_of=DEMO_AS_OF,
            started_at=factory.LazyFunction(timezone.now),
            finished_at=factory.LazyFunction(timezone.now),
        )


def result_row(symbol: str, **fields: Any) -> dict[str, Any]:
    return {"symbol": symbol, "sector": "Energy", "tech_rating": 50.0, **fields}


class ScanResultFactory(factory.django.DjangoModelFactory[ScanResult]):
    class Meta:
        model = ScanResult

    scan = factory.SubFactory(ScanFactory, finished=True)
    symbol = factory.Sequence(lambda n: f"SYM{n}")
    sector = factory.LazyAttribute(lambda r: r.row.get("sector", ""))
    tech_rating = factory.LazyAttribute(lambda r: r.row.get("tech_rating", 50.0))
    signal = ""
    row = factory.LazyAttribute(lambda r: result_row(r.symbol))


class ScanSkipFactory(factory.django.DjangoModelFactory[ScanSkip]):
    class Meta:
        model = ScanSkip

    scan = factory.SubFactory(ScanFactory, finished=True)
    symbol = factory.Sequence(lambda n: f"SKIP{n}")
    reason = "no_data"
    detail = "no bars"
