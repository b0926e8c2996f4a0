"""The price cache: the data stage cold against warm, and the stats call with 100,000 cached keys.

Sets up its own redis-server and a SQLite database, and a local HTTP server that answers like a
market-data API (Polygon-style ``GET /v2/aggs/ticker/<symbol>/range/1/day/<from>/<to>``) after
sleeping LATENCY_SECONDS per request, serving the 505 real symbols' bars from ``prices.parquet``.
The provider under test, :class:`HttpBarsProvider`, makes one HTTP request per symbol,
sequentially, as a naive per-symbol provider does. Measured, on the real universe as of AS_OF
with the default lookback:

* the data stage: the universe in chunks of ``FETCH_CHUNK`` symbols, each through
  ``market.cache.fill`` (the same code ``scanner.tasks.fetch_batch`` runs per chunk, called here
  in-process so only the cache and the provider are timed, not the broker);
  cold (cache cleared first; median of COLD_REPEATS) against warm (run again at once; median
  of WARM_REPEATS): ``warm_speedup`` = cold / warm. HTTP requests are counted by the server;
* ``repeat_hit_rate``: hits / lookups in percent over one repeated (warm) data stage, from the
  application's hit and miss counters (``cache.counters()``) before and after it;
* the stats call (``cache_stats()``, what ``GET /api/cache/stats`` and the admin page call)
  STATS_CALLS times with the cache filled to STATS_KEYS bars keys: p50, p95 and max in ms.

Targets: warm_speedup >= 20, repeat_hit_rate >= 99 %, stats_p95_ms < 10.
"""

from __future__ import annotations

import csv
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import django_with_own_redis, market_dir, report
from engine.types import Bars, Instrument
from market.providers.base import MarketDataProvider, calendar_range, check_lookback, window_copy

LATENCY_SECONDS = 0.020
AS_OF = date(2018, 1, 31)
COLD_REPEATS, WARM_REPEATS = 3, 5
STATS_KEYS, STATS_CALLS, FILL_CHUNK, FILL_BARS = 100_000, 200, 1000, 10
_VALUES = ("open", "high", "low", "close", "volume")
_DAY_MS = 86_400_000


class MarketApi(ThreadingHTTPServer):
    """A local market-data API on 127.0.0.1 (free port): all bars in memory, sorted by (symbol, date)."""

    daemon_threads = True

    def __init__(self, prices: Path) -> None:
        table = pq.read_table(prices, columns=["symbol", "date", *_VALUES])
        table = table.take(pc.sort_indices(table, [("symbol", "ascending"), ("date", "ascending")]))
        symbols = table["symbol"].to_numpy(zero_copy_only=False)
        names, starts = np.unique(symbols, return_index=True)
        ends = [*starts[1:], len(symbols)]
        self.spans = {str(n): (int(s), int(e)) for n, s, e in zip(names, starts, ends, strict=True)}
        self.days = table["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
        self.values = {c: table[c].to_numpy().astype(np.float64) for c in _VALUES}
        self.calendar_days = np.unique(self.days)
        self.requests_served = 0
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, name="market-api", daemon=True).start()

    def aggregates(self, symbol: str, first: date, last: date) -> list[dict[str, float]]:
        """Daily bars of ``symbol`` dated ``first`` to ``last`` inclusive, as the API's result rows."""
        start, end = self.spans.get(symbol, (0, 0))
        days = self.days[start:end]
        lo = start + int(np.searchsorted(days, (first - date(1970, 1, 1)).days, side="left"))
        hi = start + int(np.searchsorted(days, (last - date(1970, 1, 1)).days, side="right"))
        cols = [(self.days[lo:hi] * _DAY_MS).tolist()] + [self.values[c][lo:hi].tolist() for c in _VALUES]
        return [dict(zip(("t", "o", "h", "l", "c", "v"), row, strict=True)) for row in zip(*cols, strict=True)]

    def counted(self) -> None:
        with self._lock:
            self.requests_served += 1


class _Handler(BaseHTTPRequestHandler):
    server: MarketApi

    def do_GET(self) -> None:
        time.sleep(LATENCY_SECONDS)  # the provider's per-request latency
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if parts == ["v1", "calendar"]:
            body: dict[str, Any] = {"status": "OK", "days": self.server.calendar_days.tolist()}
        elif len(parts) == 9 and parts[:3] == ["v2", "aggs", "ticker"] and parts[4:7] == ["range", "1", "day"]:
            self.server.counted()
            rows = self.server.aggregates(parts[3], date.fromisoformat(parts[7]), date.fromisoformat(parts[8]))
            body = {"ticker": parts[3], "status": "OK", "resultsCount": len(rows), "results": rows}
        else:
            self.send_error(404)
            return
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request."""


class HttpBarsProvider(MarketDataProvider):
    """Bars from the market-data API, one GET per symbol, one after another (no batching, no
    concurrency, a new connection each time); the universe from ``constituents.csv``."""

    name = "http-bench"
    synthetic = False

    def __init__(self, base_url: str, universe_csv: Path) -> None:
        self.base_url, self.universe_csv = base_url, universe_csv

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=30) as response:
            return json.load(response)

    def instruments(self) -> list[Instrument]:
        with self.universe_csv.open(newline="") as f:
            rows = [Instrument(r["symbol"], r["name"], r["sector"]) for r in csv.DictReader(f)]
        return sorted(rows, key=lambda i: i.symbol)

    def calendar(self) -> np.ndarray:
        return np.array(self._get("/v1/calendar")["days"], dtype=np.int64).astype("datetime64[D]")

    def date_range(self) -> tuple[date, date]:
        return calendar_range(self.calendar())

    def bars(self, symbols: Sequence[str], as_of: date, lookback: int) -> dict[str, Bars]:
        check_lookback(lookback)
        first = as_of - timedelta(days=lookback * 7 // 5 + 30)  # enough calendar days for ``lookback`` sessions
        out: dict[str, Bars] = {}
        for symbol in dict.fromkeys(symbols):
            answer = self._get(f"/v2/aggs/ticker/{quote(symbol)}/range/1/day/{first}/{as_of}")
            rows = answer.get("results") or []
            if not rows:
                continue
            dates = (np.array([r["t"] for r in rows], dtype=np.int64) // _DAY_MS).astype("datetime64[D]")
            cols = [np.array([r[k] for r in rows], dtype=np.float64) for k in ("o", "h", "l", "c", "v")]
            win = window_copy(Bars(dates, *cols), as_of, lookback)
            if win is not None:
                out[symbol] = win
        return out


def _timed(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def main() -> None:
    folder = market_dir()
    work = Path(tempfile.mkdtemp(prefix="technic-bench-"))
    api = MarketApi(folder / "prices.parquet")
    redis_server = None
    try:
        redis_server = django_with_own_redis(work, 505)
        from django.conf import settings

        if redis_server.url != settings.CACHE_REDIS_URL:
            raise SystemExit(f"CACHE_REDIS_URL is {settings.CACHE_REDIS_URL}, not the bench's {redis_server.url}")
        figures = _measure(api, HttpBarsProvider(api.url, folder / "constituents.csv"))
    finally:
        api.shutdown()
        api.server_close()
        if redis_server is not None:
            redis_server.stop()
    figures["targets"] = {"warm_speedup": ">= 20", "repeat_hit_rate": ">= 99", "stats_p95_ms": "< 10"}
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    report("cache", figures)


def _measure(api: MarketApi, provider: HttpBarsProvider) -> dict[str, Any]:
    from engine.config import ScanConfig
    from market import cache
    from market.sources import FETCH_CHUNK
    from market.stats import cache_stats

    namespace, lookback = "bench-http", ScanConfig().lookback_days
    symbols = [i.symbol for i in provider.instruments()]

    def data_stage() -> None:
        for start in range(0, len(symbols), FETCH_CHUNK):
            cache.fill(provider, namespace, AS_OF, lookback, symbols[start : start + FETCH_CHUNK])

    cold, cold_requests = [], []
    for _ in range(COLD_REPEATS):
        cache.clear()
        served = api.requests_served
        cold.append(_timed(data_stage))
        cold_requests.append(api.requests_served - served)

    served, before = api.requests_served, cache.counters()["bars"]
    warm = [_timed(data_stage)]  # the repeated scan whose lookups give the hit rate
    after = cache.counters()["bars"]
    warm += [_timed(data_stage) for _ in range(WARM_REPEATS - 1)]
    warm_requests = api.requests_served - served
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]

    fake = Bars(np.arange(FILL_BARS).astype("datetime64[D]"), *(np.linspace(10, 11, FILL_BARS) for _ in range(5)))
    fill = [f"S{n:06d}" for n in range(max(0, STATS_KEYS - cache.key_counts()["bars"]))]
    for start in range(0, len(fill), FILL_CHUNK):
        cache.put_bars("bench-fill", AS_OF, FILL_BARS, dict.fromkeys(fill[start : start + FILL_CHUNK], fake))
    if (keys := sum(cache.key_counts().values())) < STATS_KEYS:
        raise SystemExit(f"only {keys} keys cached after the fill, wanted {STATS_KEYS}")
    cache_stats()  # first call outside the timing (connection set-up)
    stats_ms = sorted(1000 * _timed(cache_stats) for _ in range(STATS_CALLS))
    last = cache_stats()

    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    return {
        "symbols": len(symbols),
        "as_of": AS_OF.isoformat(),
        "lookback": lookback,
        "latency_ms_per_request": LATENCY_SECONDS * 1000,
        "cold_seconds": round(cold_s, 3),
        "cold_requests": cold_requests[0],
        "warm_seconds": round(warm_s, 4),
        "warm_requests": warm_requests,
        "warm_speedup": round(cold_s / warm_s, 1),
        "repeat_hits": hits,
        "repeat_misses": misses,
        "repeat_hit_rate": round(100.0 * hits / (hits + misses), 2) if hits + misses else None,
        "stats_keys": last.keys,
        "stats_status": last.status,
        "stats_calls": STATS_CALLS,
        "stats_p50_ms": round(statistics.median(stats_ms), 3),
        "stats_p95_ms": round(stats_ms[int(0.95 * len(stats_ms)) - 1], 3),
        "stats_max_ms": round(stats_ms[-1], 3),
    }


if __name__ == "__main__":
    main()
