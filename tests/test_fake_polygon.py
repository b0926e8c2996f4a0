"""The fake Polygon server's own behaviours that tests rely on: days that do not exist yet,
splits (adjusted and raw answers) and the paged splits reference."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from tests.support.fake_polygon import API_KEY, FakePolygon


@pytest.fixture
def fake(market_dir: Path) -> Iterator[FakePolygon]:
    server = FakePolygon(market_dir)
    yield server
    server.stop()


def get(fake: FakePolygon, path: str) -> dict[str, Any]:
    sep = "&" if "?" in path else "?"
    with urlopen(f"{fake.url}{path}{sep}apiKey={API_KEY}", timeout=5) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


def closes(fake: FakePolygon, symbol: str, first: str, last: str, adjusted: str = "true") -> list[float]:
    body = get(fake, f"/v2/aggs/ticker/{symbol}/range/1/day/{first}/{last}?adjusted={adjusted}")
    return [row["c"] for row in body.get("results") or []]


def test_days_after_show_until_do_not_exist_yet(fake: FakePolygon) -> None:
    days = fake.market_days()
    assert fake.last_day == days[-1] == date(2018, 2, 7)
    fake.show_until(date(2018, 1, 31))
    assert fake.last_day == date(2018, 1, 31)
    rows = get(fake, "/v2/aggs/ticker/AAPL/range/1/day/2018-01-25/2018-02-07")["results"]
    assert len(rows) == 5  # 25, 26, 29, 30, 31 January
    assert "results" not in get(fake, "/v2/aggs/grouped/locale/us/market/stocks/2018-02-01")
    fake.show_until(date(2018, 2, 1))
    grouped = get(fake, "/v2/aggs/grouped/locale/us/market/stocks/2018-02-01")
    assert grouped["resultsCount"] > 490


def test_a_split_adjusts_history_once_its_day_exists(fake: FakePolygon) -> None:
    before = closes(fake, "AAPL", "2018-01-29", "2018-02-02")
    fake.show_until(date(2018, 1, 31))
    fake.split("AAPL", date(2018, 2, 1), 1, 4)
    assert closes(fake, "AAPL", "2018-01-29", "2018-02-02") == before[:3]  # not executed yet
    assert get(fake, "/v3/reference/splits?ticker=AAPL")["results"] == []

    fake.show_until(date(2018, 2, 2))
    adjusted = closes(fake, "AAPL", "2018-01-29", "2018-02-02")
    raw = closes(fake, "AAPL", "2018-01-29", "2018-02-02", adjusted="false")
    assert adjusted == pytest.approx([c / 4 for c in before])
    assert raw == pytest.approx(before[:3] + [c / 4 for c in before[3:]])
    day = get(fake, "/v2/aggs/grouped/locale/us/market/stocks/2018-01-30")["results"]
    assert next(r["c"] for r in day if r["T"] == "AAPL") == pytest.approx(before[1] / 4)
    volume = get(fake, "/v2/aggs/ticker/AAPL/range/1/day/2018-01-29/2018-01-29")["results"][0]["v"]
    raw_volume = get(fake, "/v2/aggs/ticker/AAPL/range/1/day/2018-01-29/2018-01-29?adjusted=false")["results"][0]["v"]
    assert volume == 4 * raw_volume


def test_the_splits_reference_filters_and_pages(fake: FakePolygon) -> None:
    fake.split("AAPL", date(2017, 6, 1), 1, 2)
    fake.split("MSFT", date(2017, 3, 1), 1, 3)
    fake.split("XOM", date(2016, 1, 4), 2, 1)  # a reverse split
    every = get(fake, "/v3/reference/splits?limit=1000")["results"]
    assert [(r["ticker"], r["execution_date"], r["split_from"], r["split_to"]) for r in every] == [
        ("XOM", "2016-01-04", 2.0, 1.0),
        ("MSFT", "2017-03-01", 1.0, 3.0),
        ("AAPL", "2017-06-01", 1.0, 2.0),
    ]
    after = get(fake, "/v3/reference/splits?execution_date.gt=2016-01-04&execution_date.lte=2017-06-01")
    assert [r["ticker"] for r in after["results"]] == ["MSFT", "AAPL"]
    first = get(fake, "/v3/reference/splits?limit=2")
    assert len(first["results"]) == 2 and "cursor=2" in first["next_url"]
    with urlopen(f"{first['next_url']}&apiKey={API_KEY}", timeout=5) as answer:
        assert [r["ticker"] for r in json.loads(answer.read())["results"]] == ["AAPL"]
    with pytest.raises(ValueError):
        fake.split("NOPE", date(2017, 1, 3), 1, 2)
