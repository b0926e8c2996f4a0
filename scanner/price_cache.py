"""The Redis price cache: bars stored as compact binary arrays under the cache's own prefix.

This module owns the keys, the encoding and the hit/miss counters. Bars are packed as six
little-endian float64 rows (date as days since 1970, open, high, low, close, volume): 48
bytes a bar, no pickle. Keys: ``<prefix>:cache:bars:<source>:<as_of>:<lookback>:<symbol>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, cast

import numpy as np
from django.conf import settings

from scanner.engine.types import Bars
from technic_project.redis_client import cache_redis, int_hash

BARS_TTL_SECONDS = 6 * 3600


def _prefix() -> str:
    return f"{settings.TECHNIC_KEY_PREFIX}:cache"


def bars_key(source: str, as_of: date, lookback: int, symbol: str) -> str:
    return f"{_prefix()}:bars:{source}:{as_of.isoformat()}:{lookback}:{symbol}"


def encode_bars(bars: Bars) -> bytes:
    packed = np.empty((6, len(bars)), dtype="<f8")
    packed[0] = bars.dates.astype("datetime64[D]").astype(np.int64)
    for row, values in enumerate((bars.open, bars.high, bars.low, bars.close, bars.volume), start=1):
        packed[row] = values
    return packed.tobytes()


def decode_bars(data: bytes) -> Bars:
    packed = np.frombuffer(data, dtype="<f8").reshape(6, -1)
    dates = packed[0].astype(np.int64).astype("datetime64[D]")
    return Bars(dates, packed[1].copy(), packed[2].copy(), packed[3].copy(), packed[4].copy(), packed[5].copy())


def put_bars(source: str, as_of: date, lookback: int, bars: Mapping[str, Bars]) -> None:
    """Store bars (one pipeline round trip)."""
    if not bars:
        return
    pipe = cache_redis().pipeline(transaction=False)
    for symbol, b in bars.items():
        pipe.set(bars_key(source, as_of, lookback, symbol), encode_bars(b), ex=BARS_TTL_SECONDS)
    pipe.execute()


def missing(source: str, as_of: date, lookback: int, symbols: Sequence[str], scan_id: Any = None) -> list[str]:
    """The symbols whose bars are not cached; counts hits and misses (globally and per scan).

    This is the data stage's lookup: it decides what must come from the provider.
    """
    if not symbols:
        return []
    pipe = cache_redis().pipeline(transaction=False)
    for s in symbols:
        pipe.exists(bars_key(source, as_of, lookback, s))
    present = pipe.execute()
    missed = [s for s, hit in zip(symbols, present, strict=True) if not hit]
    _count(len(symbols) - len(missed), len(missed), scan_id)
    return missed


def get_bars(source: str, as_of: date, lookback: int, symbols: Sequence[str]) -> tuple[dict[str, Bars], list[str]]:
    """Cached bars of ``symbols`` and the symbols that were not there (not counted as lookups)."""
    if not symbols:
        return {}, []
    values = cache_redis().mget([bars_key(source, as_of, lookback, s) for s in symbols])
    found = {s: decode_bars(cast(bytes, v)) for s, v in zip(symbols, values, strict=True) if v is not None}
    return found, [s for s, v in zip(symbols, values, strict=True) if v is None]


def _count(hits: int, misses: int, scan_id: Any) -> None:
    pipe = cache_redis().pipeline(transaction=False)
    stats = f"{_prefix()}:stats"
    pipe.hincrby(stats, "hits", hits)
    pipe.hincrby(stats, "misses", misses)
    if scan_id is not None:
        per_scan = f"{_prefix()}:stats:scan:{scan_id}"
        pipe.hincrby(per_scan, "hits", hits)
        pipe.hincrby(per_scan, "misses", misses)
        pipe.expire(per_scan, 2 * 24 * 3600)
    pipe.execute()


def scan_stats(scan_id: Any) -> dict[str, int]:
    raw = cache_redis().hgetall(f"{_prefix()}:stats:scan:{scan_id}")
    return int_hash(raw)
