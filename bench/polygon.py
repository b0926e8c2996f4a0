"""Requests per scan through the polygon provider, for the 505-symbol real universe.

A local server answering like Polygon (``tests.support.fake_polygon``: Polygon's JSON formats, the real
bars of ``prices.parquet``) after LATENCY_SECONDS per request; the provider with its default
concurrency, no rate limit, in-process resilience state. The scan: the universe as of AS_OF with
the default lookback (500 bars). Measured, each from a fresh provider (its calendar request
included), by the server's own count of the requests it answered:

* ``per_ticker``: the data stage as ``fetch_batch`` runs it, chunk by chunk of ``FETCH_CHUNK``
  symbols, per-ticker aggregates forced;
* ``grouped``: the whole universe in one ``bars`` call with grouped daily bars forced (one
  request per market day of the window), the best grouped can do;
* ``chosen``: the data stage again with the provider choosing (``auto``), i.e. what a scan costs;
* ``universe_from_sic``: the universe without a universe file (reference tickers and one
  details request per ticker for its SIC code);
* ``plan``: the computed counts (``PolygonProvider.plan``) per chunk and per whole universe, at
  the default lookback and at 252 bars (the least a symbol needs to be rated).
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from bench.common import market_dir, report
from market.providers.polygon import PolygonConfig, PolygonProvider, Strategy
from market.providers.resilience import Resilience, RetryPolicy
from market.providers.state_stores import LocalStateStore
from market.sources import FETCH_CHUNK
from tests.support.fake_polygon import API_KEY, FakePolygon

LATENCY_SECONDS = 0.020
AS_OF = date(2018, 1, 31)
LOOKBACK = 500


def _provider(server: FakePolygon, strategy: Strategy, universe: bool = True) -> PolygonProvider:
    config = PolygonConfig(
        API_KEY, server.url, calendar_ticker="AAPL", history_start=date(2013, 1, 1), strategy=strategy
    )
    resilience = Resilience.build(LocalStateStore(), "Polygon", RetryPolicy(), 0.0, 5, 30.0, 15.0)
    return PolygonProvider(config, resilience, market_dir() / "constituents.csv" if universe else None)


def _measure(server: FakePolygon, strategy: Strategy, chunked: bool) -> dict[str, Any]:
    provider = _provider(server, strategy)
    symbols = [i.symbol for i in provider.instruments()]
    server.reset()
    started = time.perf_counter()
    fetched = 0
    step = FETCH_CHUNK if chunked else len(symbols)
    for start in range(0, len(symbols), step):
        fetched += len(provider.bars(symbols[start : start + step], AS_OF, LOOKBACK))
    seconds = time.perf_counter() - started
    return {
        "symbols": len(symbols),
        "symbols_with_bars": fetched,
        "requests": len(server.calls()),
        "calendar_requests": len([c for c in server.calls("/v2/aggs/ticker/AAPL/range/1/day/2013-01-01/")]),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    server = FakePolygon(market_dir(), latency=LATENCY_SECONDS)
    try:
        per_ticker = _measure(server, "per_ticker", chunked=True)
        grouped = _measure(server, "grouped", chunked=False)
        chosen = _measure(server, "auto", chunked=True)
        server.reset()
        started = time.perf_counter()
        universe = _provider(server, "auto", universe=False).instruments()
        sic = {"tickers": len(universe), "requests": len(server.calls()), "seconds": time.perf_counter() - started}
        provider = _provider(server, "auto")
        days = {lb: len(provider.window_days(AS_OF, lb)) for lb in (LOOKBACK, 252)}
    finally:
        server.stop()
    n = per_ticker["symbols"]
    plan = {
        f"lookback_{lb}": {
            "whole_universe": PolygonProvider.plan(n, d),
            "per_chunk_of_100": PolygonProvider.plan(FETCH_CHUNK, d),
            "grouped_if_forced_per_chunk": -(-n // FETCH_CHUNK) * d,
        }
        for lb, d in days.items()
    }
    report(
        "polygon",
        {
            "as_of": AS_OF.isoformat(),
            "lookback": LOOKBACK,
            "latency_ms": LATENCY_SECONDS * 1000,
            "per_ticker": per_ticker,
            "grouped": grouped,
            "chosen": chosen,
            "requests_per_scan": chosen["requests"],
            "universe_from_sic": {**sic, "seconds": round(sic["seconds"], 2)},
            "universe_from_file_requests": 0,
            "plan": plan,
        },
    )


if __name__ == "__main__":
    main()
