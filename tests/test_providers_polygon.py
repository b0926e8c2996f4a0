"""The polygon provider against a local server answering like Polygon (real bars, no network),
with its breaker, rate limit and request counts in the tests' real redis-server."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.types import Bars, Instrument
from market.providers import ProviderAuthError, get_provider
from market.providers.polygon import PolygonConfig, PolygonProvider
from market.providers.resilience import (
    CircuitOpenError,
    RequestBudgetExceeded,
    RequestFailed,
    Resilience,
    RetryPolicy,
    parse_retry_after,
    request_scope,
)
from market.providers.sic import UNKNOWN_SECTOR, gics_sector
from market.providers.state_stores import RedisStateStore
from tests.support.fake_polygon import (
    API_KEY,
    SIC_OF_SECTOR,
    FakePolygon,
    hanging,
    no_results,
    rate_limited,
    server_error,
)
from tests.support.processes import REPO, RedisServer

AS_OF = date(2018, 1, 31)
LOOKBACK = 300
CALENDAR = "AAPL"  # the fake serves the S&P 500 members only; AAPL trades on every day of the data


@pytest.fixture(scope="module")
def fake(market_dir: Path) -> Iterator[FakePolygon]:
    server = FakePolygon(market_dir)
    yield server
    server.stop()


@pytest.fixture
def polygon(fake: FakePolygon, redis_server: RedisServer, market_dir: Path) -> Iterator[Any]:
    """Builds providers on the fake server sharing one fresh breaker in Redis (a new key prefix
    per test); options override the config, the retry policy and the breaker settings."""
    fake.reset()
    prefix = f"technic-test-{uuid.uuid4().hex[:8]}"

    def build(universe: bool = True, rate: float = 0.0, threshold: int = 50, cooldown: float = 1.0, **options: Any):
        policy = RetryPolicy(
            max_retries=options.pop("max_retries", 3),
            backoff_base=options.pop("backoff_base", 0.01),
            backoff_max=0.05,
            retry_after_max=options.pop("retry_after_max", 5.0),
        )
        config = PolygonConfig(
            **{
                "api_key": API_KEY,
                "base_url": fake.url,
                "connect_timeout": 1.0,
                "read_timeout": 2.0,
                "calendar_ticker": CALENDAR,
                "history_start": date(2013, 1, 1),
                **options,
            }
        )
        store = RedisStateStore(redis_server.client(), prefix, "polygon")
        resilience = Resilience.build(store, "Polygon", policy, rate, threshold, cooldown, probe_ttl=3.0)
        return PolygonProvider(config, resilience, market_dir / "constituents.csv" if universe else None)

    yield build
    fake.reset()


def same_bars(a: Bars, b: Bars) -> bool:
    return all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("dates", "open", "high", "low", "close", "volume")
    )


def gaps(calls: list[Any]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(calls)]


# --- normal answers ---------------------------------------------------------------------------


def test_bars_are_the_real_bars_with_one_request_per_symbol(
    polygon: Any, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    provider = polygon()
    symbols = ["AAPL", "MSFT", "XOM", "JPM", "NOPE"]
    bars, failures = provider.bars_and_failures(symbols, AS_OF, LOOKBACK)

    assert failures == {} and sorted(bars) == ["AAPL", "JPM", "MSFT", "XOM"]  # NOPE: unknown, so no_data
    for symbol, got in bars.items():
        assert same_bars(got, real_bars[symbol].window(AS_OF, LOOKBACK)), symbol
    assert len(fake.calls("/v2/aggs/ticker/")) == 1 + len(symbols)  # the calendar, then one per symbol
    assert provider.resilience.ledger.counts()["requests"] == len(fake.calls())


def test_the_calendar_and_date_range_come_from_one_request(polygon: Any, fake: FakePolygon, real_calendar: Any) -> None:
    provider = polygon()
    assert np.array_equal(provider.calendar(), real_calendar)
    assert provider.date_range() == (date(2013, 2, 8), date(2018, 2, 7))
    assert len(fake.calls()) == 1


def test_grouped_daily_bars_equal_per_ticker_bars_and_cost_one_request_per_day(polygon: Any, fake: FakePolygon) -> None:
    per_ticker = polygon().bars(["AAPL", "KO"], AS_OF, 20)
    fake.reset()
    grouped_provider = polygon(strategy="grouped")
    grouped = grouped_provider.bars(["AAPL", "KO"], AS_OF, 20)
    assert all(same_bars(grouped[s], per_ticker[s]) for s in ("AAPL", "KO"))
    assert len(fake.calls("/v2/aggs/grouped/")) == 20


def test_a_grouped_day_answering_results_null_is_retried_not_read_as_a_day_without_bars(
    polygon: Any, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    provider = polygon(strategy="grouped")
    provider.calendar()
    fake.script(no_results(times=2))  # two of the 20 days answer `results: null` once each
    bars, failures = provider.bars_and_failures(["AAPL", "KO"], AS_OF, 20)

    assert failures == {}
    assert all(same_bars(bars[s], real_bars[s].window(AS_OF, 20)) for s in ("AAPL", "KO"))
    assert len(fake.calls("/v2/aggs/grouped/")) == 22
    assert provider.resilience.ledger.counts()["retried"] == 2


def test_a_grouped_day_that_keeps_answering_no_rows_fails_its_symbols_with_the_reason(
    polygon: Any, fake: FakePolygon
) -> None:
    provider = polygon(strategy="grouped", max_retries=2)
    provider.calendar()
    fake.script(no_results(times=None, match="/2018-01-31"))
    bars, failures = provider.bars_and_failures(["AAPL", "KO"], AS_OF, 20)

    assert bars == {} and set(failures) == {"AAPL", "KO"}
    assert "2018-01-31" in failures["AAPL"] and "no rows in 3 answers" in failures["AAPL"]
    assert len(fake.calls("/v2/aggs/grouped/locale/us/market/stocks/2018-01-31")) == 3


def test_auto_picks_grouped_only_when_it_needs_at_most_half_the_requests(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon()
    symbols = [s for s, _, _ in fake.listed][:60]
    assert PolygonProvider.plan(505, 500) == {"per_ticker": 505, "grouped": 500}
    assert provider.choose(505, 500) == "per_ticker" and provider.choose(100, 50) == "grouped"
    bars = provider.bars(symbols, AS_OF, 30)  # 30 days < 60 symbols / 2: grouped
    assert len(bars) == 60
    assert len(fake.calls("/v2/aggs/grouped/")) == 30 and len(fake.calls("/v2/aggs/ticker/")) == 1


def test_long_histories_are_read_page_by_page_through_next_url(polygon: Any, fake: FakePolygon) -> None:
    fake.page_size = 100
    try:
        bars = polygon().bars(["AAPL"], AS_OF, 250)
    finally:
        fake.page_size = 50_000
    assert len(bars["AAPL"]) == 250
    assert len(fake.calls("/v2/aggs/ticker/AAPL/")) == 13 + 3  # calendar 1,259 bars, then 250 bars


def test_the_universe_without_a_file_gets_sectors_from_sic_codes(polygon: Any, fake: FakePolygon) -> None:
    instruments = polygon(universe=False).instruments()
    expected = [Instrument(s, n, sector) for s, n, sector in sorted(fake.listed)]
    assert instruments == expected
    assert len(fake.calls("/v3/reference/tickers")) == 1 + len(expected)  # one page of 1,000, then details


def test_sic_codes_map_to_gics_sectors() -> None:
    real = {"3571": "Information Technology", "6021": "Financials", "2911": "Energy", "5961": "Consumer Discretionary"}
    real |= {"4813": "Telecommunication Services", "4911": "Utilities", "6798": "Real Estate", "2834": "Health Care"}
    real |= {"2080": "Consumer Staples", "2810": "Materials", "3720": "Industrials", "7372": "Information Technology"}
    assert {code: gics_sector(code) for code in real} == real
    assert {gics_sector(code) for code, _ in SIC_OF_SECTOR.values()} == set(SIC_OF_SECTOR)
    assert gics_sector(None) == gics_sector("") == gics_sector("0") == UNKNOWN_SECTOR


# --- retries ----------------------------------------------------------------------------------


def test_a_429_storm_is_waited_out_as_retry_after_asks(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon()
    provider.calendar()
    fake.script(rate_limited(times=2, retry_after=1, match="/v2/aggs/ticker/MSFT/"))
    started = time.monotonic()
    bars = provider.bars(["MSFT"], AS_OF, LOOKBACK)
    elapsed = time.monotonic() - started

    calls = fake.calls("/v2/aggs/ticker/MSFT/")
    assert [c.status for c in calls] == [429, 429, 200] and len(bars["MSFT"]) == LOOKBACK
    assert all(1.0 <= gap < 1.5 for gap in gaps(calls)), gaps(calls)
    assert 2.0 <= elapsed < 3.5
    assert provider.resilience.ledger.counts()["throttled"] == 2
    assert provider.resilience.breaker.state()["state"] == "closed"  # being throttled is not a failure


def test_a_retry_after_beyond_the_allowed_wait_gives_the_symbol_up_at_once(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(retry_after_max=2.0)
    provider.calendar()
    fake.script(rate_limited(times=None, retry_after=120, match="/v2/aggs/ticker/MSFT/"))
    started = time.monotonic()
    bars, failures = provider.bars_and_failures(["MSFT", "KO"], AS_OF, LOOKBACK)
    assert time.monotonic() - started < 1.0
    assert list(bars) == ["KO"] and "asked to wait 120 s" in failures["MSFT"]
    assert len(fake.calls("/v2/aggs/ticker/MSFT/")) == 1


def test_a_retry_after_holds_every_process_sharing_the_rate_limit(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(rate=1000.0)
    provider.calendar()
    fake.script(rate_limited(times=1, retry_after=1, match="/v2/aggs/ticker/MSFT/"))
    provider.bars(["MSFT"], AS_OF, LOOKBACK)
    other = polygon(rate=1000.0)  # another process's provider on the same Redis
    other.resilience.limiter.hold(1.0)
    started = time.monotonic()
    other.bars(["KO"], AS_OF, LOOKBACK)
    assert time.monotonic() - started >= 0.9


def test_the_shared_rate_limit_spaces_requests(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(rate=20.0)
    provider.calendar()
    fake.reset()
    started = time.monotonic()
    provider.bars([s for s, _, _ in fake.listed][:21], AS_OF, LOOKBACK)
    assert time.monotonic() - started >= 0.95  # 21 requests at 20/s, whatever the 4 threads do


def test_5xx_bursts_are_retried_with_backoff_and_heal(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(max_retries=3, backoff_base=0.2)
    provider.calendar()
    fake.script(server_error(1, 500, match="/v2/aggs/ticker/XOM/"), server_error(1, 503, match="/v2/aggs/ticker/XOM/"))
    fake.script(server_error(1, 502, match="/v2/aggs/ticker/XOM/"))
    bars, failures = provider.bars_and_failures(["XOM"], AS_OF, LOOKBACK)
    calls = fake.calls("/v2/aggs/ticker/XOM/")
    assert len(bars["XOM"]) == LOOKBACK and failures == {} and [c.status for c in calls] == [500, 503, 502, 200]
    assert all(gap < 0.2 * 2**i + 0.1 for i, gap in enumerate(gaps(calls)))  # full jitter under the cap
    counts = provider.resilience.ledger.counts()
    assert (counts["failed"], counts["retried"]) == (3, 3)
    assert provider.resilience.breaker.state()["consecutive_failures"] == 0  # a success resets the count


def test_a_symbol_that_keeps_failing_is_reported_with_its_error_and_the_rest_is_fetched(
    polygon: Any, fake: FakePolygon
) -> None:
    provider = polygon(max_retries=2)
    provider.calendar()
    fake.script(server_error(None, 500, match="/v2/aggs/ticker/XOM/"))
    bars, failures = provider.bars_and_failures(["XOM", "KO", "JPM"], AS_OF, LOOKBACK)
    assert sorted(bars) == ["JPM", "KO"]
    assert failures["XOM"].endswith("gave up after 3 attempts: HTTP 500: Internal server error")
    assert len(fake.calls("/v2/aggs/ticker/XOM/")) == 3


def test_an_in_process_scan_skips_a_symbol_whose_fetch_failed_with_the_error(polygon: Any, fake: FakePolygon) -> None:
    from engine.config import ScanConfig
    from progress.tracker import ProgressTracker
    from scanner.runner import run_scan

    provider = polygon(max_retries=1)
    fake.script(server_error(None, 500, match="/v2/aggs/ticker/XOM/"))
    report = run_scan(ScanConfig(symbols=("XOM", "KO"), as_of=AS_OF), provider, ProgressTracker("cli"))
    assert [r["symbol"] for r in report.rows] == ["KO"]
    [skip] = report.skipped
    assert skip.symbol == "XOM" and skip.reason == "no_data"
    assert skip.detail.startswith("fetching its bars failed:") and "HTTP 500" in skip.detail


def test_a_server_that_never_answers_times_out(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(read_timeout=0.3, max_retries=1)
    provider.calendar()
    fake.script(hanging(match="/v2/aggs/ticker/KO/"))
    started = time.monotonic()
    bars, failures = provider.bars_and_failures(["KO"], AS_OF, LOOKBACK)
    elapsed = time.monotonic() - started
    assert bars == {} and "no answer within the read timeout of 0.3 s" in failures["KO"]
    assert len(fake.calls("/v2/aggs/ticker/KO/")) == 2 and 0.6 <= elapsed < 1.5


def test_an_unreachable_server_fails_at_connect(polygon: Any, fake: FakePolygon) -> None:
    from tests.support.processes import free_port

    provider = polygon(base_url=f"http://127.0.0.1:{free_port()}", max_retries=1)
    with pytest.raises(RequestFailed, match=r"cannot connect to http://127\.0\.0\.1"):
        provider.calendar()


def test_an_invalid_key_fails_at_once_with_one_call_and_no_retry(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(api_key="not-the-key")
    with pytest.raises(ProviderAuthError, match=r"rejected the API key \(HTTP 401: Unknown API Key\)"):
        provider.bars(["AAPL", "MSFT"], AS_OF, LOOKBACK)
    assert [c.status for c in fake.calls()] == [401]
    assert "not-the-key" not in str(provider.resilience.breaker.state())


def test_the_polygon_provider_without_a_key_says_what_to_set() -> None:
    with pytest.raises(Exception, match="needs an API key: set POLYGON_API_KEY"):
        get_provider("polygon")


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


# --- the circuit breaker ----------------------------------------------------------------------


def test_the_breaker_opens_fails_fast_and_closes_after_one_probe(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(threshold=3, cooldown=1.0, max_retries=5, concurrency=1)
    provider.calendar()
    fake.script(server_error(None, 503, match="/v2/aggs/"))
    with pytest.raises(CircuitOpenError, match="circuit breaker open after 3 consecutive failures"):
        provider.bars(["KO", "XOM"], AS_OF, LOOKBACK)
    assert len(fake.calls("/v2/aggs/ticker/KO/")) == 3 and not fake.calls("/v2/aggs/ticker/XOM/")
    state = provider.resilience.breaker.state()
    assert (state["state"], state["consecutive_failures"], state["times_opened"]) == ("open", 3, 1)

    before = len(fake.calls())
    started = time.monotonic()
    with pytest.raises(CircuitOpenError):
        provider.bars(["XOM"], AS_OF, LOOKBACK)
    assert time.monotonic() - started < 0.1 and len(fake.calls()) == before  # fails fast: no call at all

    time.sleep(1.05)  # the cool-down: one probe goes through, and it fails: open again
    with pytest.raises(CircuitOpenError):
        provider.bars(["XOM"], AS_OF, LOOKBACK)
    assert len(fake.calls()) == before + 1
    assert provider.resilience.breaker.state()["state"] == "open"

    fake.reset()  # the service is back
    time.sleep(1.05)
    bars = provider.bars(["XOM", "KO"], AS_OF, LOOKBACK)
    assert sorted(bars) == ["KO", "XOM"] and len(fake.calls()) == 2
    assert provider.resilience.breaker.state()["state"] == "closed"


def test_after_the_cool_down_only_one_caller_probes(polygon: Any) -> None:
    breaker = polygon(threshold=1, cooldown=0.2).resilience.breaker
    breaker.permit().failed()
    time.sleep(0.25)
    probe = breaker.permit()
    assert probe.probe and breaker.state()["state"] == "half_open"
    with pytest.raises(CircuitOpenError, match="a probe is in flight"):
        breaker.permit()
    probe.succeeded()
    assert breaker.state()["state"] == "closed" and not breaker.permit().probe


_CHILD = """
import sys
from datetime import date
from pathlib import Path
import redis
from market.providers.polygon import PolygonConfig, PolygonProvider
from market.providers.resilience import CircuitOpenError, Resilience, RetryPolicy
from market.providers.state_stores import RedisStateStore

url, redis_url, prefix = sys.argv[1:4]
store = RedisStateStore(redis.Redis.from_url(redis_url), prefix, "polygon")
resilience = Resilience.build(store, "Polygon", RetryPolicy(5, 0.01, 0.05), 0, 3, 30.0, 3.0)
config = PolygonConfig("{key}", url, calendar_ticker="AAPL", history_start=date(2013, 1, 1), concurrency=1)
try:
    PolygonProvider(config, resilience).bars(["KO"], date(2018, 1, 31), 300)
except CircuitOpenError as err:
    print("child:", err)
    sys.exit(0)
sys.exit("the breaker did not open")
"""


def test_two_processes_share_one_breaker(polygon: Any, fake: FakePolygon, redis_server: RedisServer) -> None:
    provider = polygon(threshold=3, cooldown=30.0)
    prefix = provider.resilience.breaker.store.breaker_key.split(":breaker:")[0]
    fake.script(server_error(None, 500))
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD.format(key=API_KEY)), fake.url, redis_server.url, prefix],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert "circuit breaker open after 3 consecutive failures" in child.stdout
    opened_by_child = len(fake.calls())
    assert opened_by_child == 3

    with pytest.raises(CircuitOpenError):  # this process: open at once, nothing sent
        provider.bars(["KO", "XOM"], AS_OF, LOOKBACK)
    assert len(fake.calls()) == opened_by_child
    assert provider.resilience.breaker.state()["state"] == "open"


# --- request counts ---------------------------------------------------------------------------


def test_a_whole_universe_stays_within_the_computed_request_bound(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(max_retries=3)
    symbols = [i.symbol for i in provider.instruments()]
    fake.script(rate_limited(times=3, retry_after=0.05, match="/v2/aggs/ticker/A"))
    fake.script(server_error(times=4, status=503, match="/v2/aggs/ticker/B"))
    with request_scope("scan-1", budget=math.ceil(3 * len(symbols)) + 20):
        fetched: dict[str, Bars] = {}
        for start in range(0, len(symbols), 100):  # as the data stage does, chunk by chunk
            fetched.update(provider.bars(symbols[start : start + 100], AS_OF, 500))

    plan = PolygonProvider.plan(len(symbols), len(provider.window_days(AS_OF, 500)))
    bound = plan["per_ticker"] + 1 + 3 + 4  # the calendar, then one more call per scripted failure
    assert len(fetched) == len(symbols) == 505
    assert len(fake.calls()) == bound
    counts = provider.resilience.ledger.counts("scan-1")
    assert counts["requests"] == len(fake.calls()) and counts["retried"] == 7


def test_a_scan_stops_at_its_request_budget(polygon: Any, fake: FakePolygon) -> None:
    provider = polygon(concurrency=1)
    provider.calendar()
    fake.reset()
    symbols = [s for s, _, _ in fake.listed][:40]
    with request_scope("scan-2", budget=25), pytest.raises(RequestBudgetExceeded, match="budget of 25 requests"):
        provider.bars(symbols, AS_OF, LOOKBACK)
    assert len(fake.calls()) == 25 == provider.resilience.ledger.counts("scan-2")["requests"]


def test_configs_are_checked_when_built() -> None:
    with pytest.raises(Exception, match="must be an http"):
        PolygonConfig(API_KEY, "ftp://example.com")
    assert replace(PolygonConfig(API_KEY), strategy="grouped").strategy == "grouped"
