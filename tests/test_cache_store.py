"""The price cache against a real redis-server: encoding, TTLs, counters, key counts, clear,
read-through, the lock, statistics, and behaviour when its Redis is down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import numpy as np
import pytest
from django.test import override_settings

from engine.types import Bars, Instrument
from market import cache
from market.stats import cache_stats
from market.ttl import MARKET_TZ
from progress import store as progress
from tests.support.processes import RedisServer

AS_OF = date(2018, 1, 31)


def bars(n: int = 30, start: float = 100.0, step: float = 0.5) -> Bars:
    dates = np.arange(np.datetime64("2017-11-01"), np.datetime64("2017-11-01") + n).astype("datetime64[D]")
    close = start + step * np.arange(n)
    return Bars(dates, close - 0.1, close + 1.0, close - 1.0, close, np.full(n, 1e6))


@pytest.fixture
def empty_cache(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The tests' redis-server with an empty price cache and fresh counters."""
    cache.clear()
    redis_server.client().delete("technic:cachestats", "technic:cachestats:popular:ns")
    yield redis_server
    cache.clear()


def test_bars_are_stored_as_binary_arrays_and_read_back_exactly(empty_cache: RedisServer) -> None:
    original = bars()
    cache.put_bars("ns", AS_OF, 500, {"AAA": original})
    raw = empty_cache.client().get(cache.bars_key("ns", AS_OF, 500, "AAA"))
    assert raw is not None and len(raw) == 6 * 8 * len(original)  # six float64 rows, no pickle header
    found, missed = cache.get_bars("ns", AS_OF, 500, ["AAA", "BBB"])
    assert missed == ["BBB"]
    for field in ("dates", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(found["AAA"], field), getattr(original, field))


def test_bars_of_a_finished_trading_day_get_the_long_ttl(empty_cache: RedisServer) -> None:
    cache.put_bars("ns", AS_OF, 500, {"AAA": bars()})
    ttl = empty_cache.client().ttl(cache.bars_key("ns", AS_OF, 500, "AAA"))
    assert cache.policy().finished_day - 5 <= ttl <= cache.policy().finished_day


def test_bars_of_todays_open_session_live_shorter_when_the_symbol_is_volatile(empty_cache: RedisServer) -> None:
    session_day, during_session = date(2026, 11, 18), datetime(2026, 11, 18, 11, 0, tzinfo=MARKET_TZ)
    swinging = bars()
    swinging.close[1::2] *= 1.1  # +-10 % a day: far above the policy's volatile_vol
    cache.put_bars("ns", session_day, 500, {"CALM": bars(), "SWING": swinging}, now=during_session)
    client, policy = empty_cache.client(), cache.policy()
    calm, volatile = (client.ttl(cache.bars_key("ns", session_day, 500, s)) for s in ("CALM", "SWING"))
    assert policy.market_hours - 5 <= calm <= policy.market_hours
    assert int(policy.market_hours * policy.volatile_factor) - 5 <= volatile < calm


def test_lookups_count_hits_misses_and_how_often_each_symbol_is_scanned(empty_cache: RedisServer) -> None:
    cache.put_bars("ns", AS_OF, 500, {"AAA": bars()})
    assert cache.missing("ns", AS_OF, 500, ["AAA", "BBB", "CCC"]) == ["BBB", "CCC"]
    assert cache.missing("ns", AS_OF, 500, ["AAA"]) == []
    assert cache.counters()["bars"] == {"hits": 2, "misses": 2}
    assert cache.popular("ns", 1) == ["AAA"]
    assert set(cache.popular("ns", 10)) == {"AAA", "BBB", "CCC"}
    cache.get_bars("ns", AS_OF, 500, ["AAA", "ZZZ"])  # the scanning stage's read is not a lookup
    assert cache.counters()["bars"] == {"hits": 2, "misses": 2}


def test_keys_are_counted_by_kind_and_expired_ones_drop_out(empty_cache: RedisServer) -> None:
    cache.put_bars("ns", AS_OF, 500, {f"S{i}": bars(5) for i in range(7)})
    cache.universe("ns", lambda: [Instrument("AAA", "A Co", "Energy")])
    assert cache.key_counts() == {"bars": 7, "universe": 1, "results": 0}
    far_future = 10 * cache.policy().finished_day + 2e9
    assert cache.key_counts(now=far_future) == {"bars": 0, "universe": 0, "results": 0}


def test_the_universe_and_results_are_read_through_the_cache(empty_cache: RedisServer) -> None:
    loads: list[str] = []

    def universe() -> list[Instrument]:
        loads.append("universe")
        return [Instrument("AAA", "A Co", "Energy"), Instrument("BBB", "B Co", "Utilities")]

    expected = [Instrument("AAA", "A Co", "Energy"), Instrument("BBB", "B Co", "Utilities")]
    assert cache.universe("ns", universe) == expected
    assert cache.universe("ns", universe) == expected
    assert loads == ["universe"]
    rows = [{"symbol": "AAA", "tech_rating": 71.5, "flags": []}]
    assert cache.results("scan-1", lambda: rows) == rows
    assert cache.results("scan-1", lambda: pytest.fail("a cached result is not loaded again")) == rows
    counts = cache.counters()
    assert counts["universe"] == {"hits": 1, "misses": 1} and counts["results"] == {"hits": 1, "misses": 1}


def test_clear_removes_every_cache_key_and_nothing_else(empty_cache: RedisServer) -> None:
    client = empty_cache.client()
    others = {
        "celery-task-meta-1234": "{}",
        "_kombu.binding.celery": "x",
        "unacked_index": "x",
        "technic:channels:group:scan-1": "x",
        "technic:scan:1:cancel": "1",
    }
    for key, value in others.items():
        client.set(key, value)
    progress.stage_started("3f2b7a9e-0000-4000-8000-000000000001", "universe_loading", 1)
    progress_state = "technic:progress:3f2b7a9e-0000-4000-8000-000000000001:state"
    assert client.exists(progress_state)
    cache.put_bars("ns", AS_OF, 500, {f"S{i:04d}": bars(3) for i in range(2500)})  # more than one UNLINK batch
    cache.universe("ns", lambda: [Instrument("AAA", "A Co", "Energy")])
    cache.missing("ns", AS_OF, 500, ["S0001"])

    removed = cache.clear()

    assert removed == 2500 + 1 + 2  # bars, the universe, and the two kinds' indexes
    assert list(client.scan_iter("technic:cache:*")) == []
    assert all(client.exists(key) for key in others)
    assert client.exists(progress_state)
    assert client.exists("technic:cachestats") and client.exists("technic:cachestats:popular:ns")
    assert cache.key_counts() == {"bars": 0, "universe": 0, "results": 0}


def test_a_lock_is_held_by_one_holder_at_a_time(empty_cache: RedisServer) -> None:
    with cache.lock("warm:ns", 60) as first:
        assert first and cache.locked("warm:ns")
        with cache.lock("warm:ns", 60) as second:
            assert not second
        assert cache.locked("warm:ns")  # the refused holder released nothing
    assert not cache.locked("warm:ns")


def test_statistics_report_hit_rate_badge_keys_memory_and_server(empty_cache: RedisServer) -> None:
    cache.put_bars("ns", AS_OF, 500, {f"S{i}": bars(5) for i in range(9)})
    cache.missing("ns", AS_OF, 500, [f"S{i}" for i in range(10)])  # 9 hits, 1 miss
    stats = cache_stats()
    assert stats.available and stats.error is None
    assert (stats.hits, stats.misses, stats.hit_rate, stats.status) == (9, 1, 90.0, "excellent")
    assert stats.by_kind["bars"] == {"hits": 9, "misses": 1, "hit_rate": 90.0, "keys": 9}
    assert stats.keys == 9
    assert stats.memory["used_bytes"] > 0 and stats.memory["peak_bytes"] >= stats.memory["used_bytes"]
    assert stats.memory["fragmentation_ratio"] is not None
    assert stats.server["redis_version"] == empty_cache.client().info("server")["redis_version"]
    assert stats.server["uptime_seconds"] >= 0 and stats.server["connected_clients"] >= 1
    assert stats.url == empty_cache.url


def test_statistics_before_any_lookup_say_idle(empty_cache: RedisServer) -> None:
    stats = cache_stats()
    assert (stats.status, stats.hit_rate, stats.hits) == ("idle", None, 0)


def test_a_cache_that_is_down_raises_cache_unavailable_and_statistics_say_unavailable(dead_cache: str) -> None:
    with pytest.raises(cache.CacheUnavailable, match="unreachable"):
        cache.missing("ns", AS_OF, 500, ["AAA"])
    with pytest.raises(cache.CacheUnavailable):  # within the back-off: not even tried
        cache.put_bars("ns", AS_OF, 500, {"AAA": bars()})
    stats = cache_stats()
    assert (stats.status, stats.available, stats.hits) == ("unavailable", False, None)
    assert stats.error and "unreachable" in stats.error


def test_with_the_cache_down_its_readers_go_on_without_it(dead_cache: str) -> None:
    universe = [Instrument("AAA", "A Co", "Energy")]
    assert cache.universe("ns", lambda: universe) == universe
    assert cache.results("scan-1", lambda: [{"symbol": "AAA"}]) == [{"symbol": "AAA"}]
    assert cache.read_bars("ns", AS_OF, 500, ["AAA", "BBB"]) == ({}, ["AAA", "BBB"], True)


def test_the_password_of_the_cache_url_is_never_shown() -> None:
    with override_settings(CACHE_REDIS_URL="redis://:s3cret@cache.example:6380/2"):
        assert cache.safe_url() == "redis://***@cache.example:6380/2"
