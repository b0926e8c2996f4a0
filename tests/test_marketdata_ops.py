"""Operating the market data store: ``manage.py marketdata status|update|backfill``, beat's
top-up after the close (its New York schedule, trading days only, one at a time), and the
store on the admin's cache page and in ``/health/detailed``; against the fake Polygon server."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from cache_admin import tasks
from cache_admin.models import CacheAction
from engine.types import Bars
from infra.schedules import new_york_crontab
from market import store
from market.models import MarketSource, StoredBar
from market.sources import DataSource
from tests.support.fake_polygon import FakePolygon

pytestmark = pytest.mark.django_db

SIZE = 60
SINCE = date(2018, 1, 2)
LAST = date(2018, 2, 7)
PAGE = "/admin/cache_admin/cacheaction/"


@pytest.fixture
def universe(tmp_path: Path, market_dir: Path, polygon_here: DataSource) -> Iterator[DataSource]:
    """The polygon source over a universe of the first SIZE symbols of the S&P 500 file."""
    rows = (market_dir / "constituents.csv").read_text().splitlines()
    path = tmp_path / "universe.csv"
    path.write_text("\n".join(rows[: SIZE + 1]) + "\n")
    with override_settings(TECHNIC_UNIVERSE_PATH=str(path)):
        yield DataSource.from_settings()


def symbols_of(source: DataSource) -> list[str]:
    return [line.split(",")[0] for line in Path(source.universe_path).read_text().splitlines()[1:]]


def bars_between(real_bars: dict[str, Bars], symbols: list[str], first: date, last: date) -> int:
    lo, hi = np.datetime64(first, "D"), np.datetime64(last, "D")
    return sum(int(((real_bars[s].dates >= lo) & (real_bars[s].dates <= hi)).sum()) for s in symbols)


def marketdata(*args: str) -> str:
    out = io.StringIO()
    call_command("marketdata", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def calendar_read_before_the_last_close() -> None:
    """As if the calendar was read before the latest session closed: the next look reads it again."""
    MarketSource.objects.update(calendar_read_at=store.last_close(datetime.now(UTC)) - timedelta(hours=1))


def test_a_backfill_fetches_each_symbol_once_and_status_shows_the_store(
    universe: DataSource, fake: FakePolygon, real_bars: dict[str, Bars], capsys: pytest.CaptureFixture[str]
) -> None:
    assert "0 bars" in marketdata("status")  # the source and its calendar, nothing stored yet

    printed = marketdata("backfill", "--since", SINCE.isoformat())

    symbols = symbols_of(universe)
    expected = bars_between(real_bars, symbols, SINCE, LAST)
    # one per-ticker range each; the calendar was read by the fixture, and with nothing stored
    # before there are no splits to check
    assert len(fake.calls("/v2/aggs/ticker/")) == len(fake.calls()) == SIZE
    assert f"{SIZE}/{SIZE} symbols through {LAST}, {expected} bars written, {SIZE} requests" in printed
    assert f"backfill: {SIZE}/{SIZE} symbols (100 %)" in capsys.readouterr().err
    audit = CacheAction.objects.get()
    assert (audit.kind, audit.via, audit.keys) == ("backfill", "cli", expected)

    status = json.loads(marketdata("status", "--json"))["sources"]
    assert len(status) == 1
    figures = status[0]
    assert (figures["symbols"], figures["bars"], figures["days_missing"]) == (SIZE, expected, 0)
    assert (figures["first_day"], figures["last_day"], figures["calendar_last_day"]) == (
        SINCE.isoformat(),
        LAST.isoformat(),
        LAST.isoformat(),
    )
    assert f"{SIZE} symbols, {expected} bars, {SINCE} to {LAST}, 0 market days missing" in marketdata("status")

    fake.reset()
    assert f"{SIZE}/{SIZE} symbols through {LAST}, 0 bars written, 0 requests" in marketdata(
        "backfill", "--since", SINCE.isoformat()
    )
    assert fake.calls() == []


def test_a_backfill_stopped_by_its_budget_keeps_what_it_fetched_and_the_next_run_goes_on(
    universe: DataSource, fake: FakePolygon
) -> None:
    with pytest.raises(CommandError, match=r"stopped after 25 of 60 symbols: the budget of 30 requests .* is spent"):
        marketdata("backfill", "--since", SINCE.isoformat(), "--budget", "30")
    assert len(fake.calls()) == 30
    # the first batch of 25 was written; the 5 answers of the batch the budget cut are lost
    assert StoredBar.objects.values("symbol").distinct().count() == 25
    assert "stopped" in CacheAction.objects.get().detail

    fake.reset()
    assert f"{SIZE}/{SIZE} symbols through {LAST}" in marketdata("backfill", "--since", SINCE.isoformat())
    assert len(fake.calls()) == SIZE - 25
    assert StoredBar.objects.values("symbol").distinct().count() == SIZE


def test_beat_tops_the_store_up_after_a_close_with_one_grouped_request_then_warms_the_cache(
    universe: DataSource, fake: FakePolygon, real_bars: dict[str, Bars], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.show_until(date(2018, 2, 6))
    calendar_read_before_the_last_close()
    # the default scan's windows (500 market days): one range request per symbol, and the calendar
    assert f"{SIZE}/{SIZE} symbols through 2018-02-06" in marketdata("update")
    assert len(fake.calls()) == SIZE + 1
    assert StoredBar.objects.filter(day=LAST).count() == 0

    fake.show_until(LAST)
    calendar_read_before_the_last_close()
    fake.clear_calls()
    monkeypatch.setattr(tasks, "_new_york_today", lambda: date(2026, 12, 5))  # a Saturday
    assert tasks.update_market_data() == {"state": "skipped", "reason": "2026-12-05 is no NYSE session"}
    assert fake.calls() == []

    monkeypatch.setattr(tasks, "_new_york_today", lambda: date(2026, 12, 4))
    result = tasks.update_market_data()

    assert result["state"] == "updated", result
    # the calendar (AAPL's bars), the new day's grouped bars of every ticker, the splits since the last top-up
    assert len(fake.calls("/v2/aggs/ticker/AAPL/")) == 1 and len(fake.calls("/v2/aggs/grouped/")) == 1
    assert len(fake.calls("/v3/reference/splits")) == 1 and len(fake.calls()) == 3
    assert result["requests"] == 3 and result["through"] == LAST.isoformat()
    on_the_day = sum(int(np.datetime64(LAST, "D") in b.dates) for b in real_bars.values())
    assert result["bars_written"] == on_the_day  # the grouped answer holds every ticker's bar
    assert result["warm"]["symbols"] == SIZE and result["warm"]["refreshed"] == SIZE
    assert list(CacheAction.objects.order_by("at").values_list("kind", "via")) == [
        ("update", "cli"),
        ("update", "beat"),
        ("warm", "beat"),
    ]

    fake.clear_calls()
    assert tasks.update_market_data()["requests"] == 0  # a second run finds nothing to do


def test_one_update_at_a_time(universe: DataSource, fake: FakePolygon) -> None:
    with store.lock(f"marketdata:{universe.cache_namespace()}", 60):
        with pytest.raises(CommandError, match="update or backfill of the polygon market data is running"):
            marketdata("update")
        assert tasks.update_market_data(trading_days_only=False)["state"] == "skipped"
    assert fake.calls() == []


@override_settings(TECHNIC_DATA_PROVIDER="demo")
def test_local_data_keeps_no_store_and_says_so() -> None:
    with pytest.raises(CommandError, match="demo provider reads local data and keeps no market data store"):
        marketdata("backfill", "--since", "2018-01-02")
    assert tasks.update_market_data() == {
        "state": "skipped",
        "reason": "the demo provider reads local data and keeps no store",
    }


def test_bad_arguments_get_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (("backfill",), ("backfill", "--since", "yesterday"), ("refresh",)):
        with pytest.raises(SystemExit) as stopped:
            call_command("marketdata", *args)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("CommandError: ") and err.count("\n") == 1 and "manage.py marketdata --help" in err


def staff() -> Client:
    User.objects.create_user("operator", password="pw", is_staff=True)
    client = Client()
    assert client.login(username="operator", password="pw")
    return client


def test_health_and_the_cache_page_show_the_store(
    universe: DataSource, real_bars: dict[str, Bars], monkeypatch: pytest.MonkeyPatch
) -> None:
    marketdata("backfill", "--since", SINCE.isoformat())
    expected = bars_between(real_bars, symbols_of(universe), SINCE, LAST)
    client = staff()

    component = client.get("/health/detailed").json()["components"]["market_data"]
    assert component["status"] == "up"
    assert (component["symbols"], component["bars"]) == (SIZE, expected)
    assert (component["first_day"], component["last_day"]) == (SINCE.isoformat(), LAST.isoformat())
    assert Client().get("/health/detailed").json()["components"]["market_data"] == {"status": "up"}

    page = client.get(PAGE).content.decode()
    assert "Market data store" in page and f"<td>{SIZE}</td><td>{expected}</td>" in page
    queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class Queued:
        id = "task-1"

    def delay(*args: Any, **kwargs: Any) -> Queued:
        queued.append((args, kwargs))
        return Queued()

    monkeypatch.setattr("cache_admin.admin.update_market_data.delay", delay)
    assert client.post(PAGE + "marketdata/").status_code == 302
    assert queued == [((User.objects.get(username="operator").pk, "admin"), {"trading_days_only": False})]
    assert client.get(PAGE + "marketdata/").status_code == 405


@override_settings(TECHNIC_DATA_PROVIDER="demo")
def test_health_says_local_data_has_no_store() -> None:
    client = staff()
    component = client.get("/health/detailed").json()["components"]["market_data"]
    assert component["status"] == "up" and component["store"] == "not_applicable"


def test_the_top_up_is_scheduled_in_new_york_time_summer_and_winter() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["marketdata-update"]
    assert entry["task"] == "cache_admin.tasks.update_market_data"
    schedule = pickle.loads(pickle.dumps(entry["schedule"]))  # beat keeps its schedule in a shelve
    assert isinstance(schedule, new_york_crontab)

    def next_run(after: datetime) -> datetime:
        last, delta, _ = schedule.remaining_delta(after)
        return (last + delta).astimezone(UTC)

    assert next_run(datetime(2018, 1, 2, 12, tzinfo=UTC)) == datetime(2018, 1, 3, 1, 30, tzinfo=UTC)  # EST
    assert next_run(datetime(2018, 7, 2, 12, tzinfo=UTC)) == datetime(2018, 7, 3, 0, 30, tzinfo=UTC)  # EDT
    # after Friday's run, Monday's (the task itself skips holidays)
    assert next_run(datetime(2018, 7, 7, 0, 31, tzinfo=UTC)) == datetime(2018, 7, 10, 0, 30, tzinfo=UTC)
