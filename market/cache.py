"""The price cache in Redis (CACHE_REDIS_URL): the one module that owns its keys, TTLs and counters.

Data keys, all under ``<TECHNIC_KEY_PREFIX>:cache:`` (the only keys :func:`clear` removes):

* ``bars:<namespace>:<as_of>:<lookback>:<symbol>``: six little-endian float64 rows (date as
  days since 1970, open, high, low, close, volume), 48 bytes a bar, never pickle;
* ``universe:<namespace>``: the provider's instruments as JSON ``[[symbol, name, sector], …]``;
* ``results:<scan_id>``: a finished scan's ranked rows as JSON;
* ``index:<kind>``: a sorted set of that kind's keys scored by expiry time, so keys are counted
  by kind without scanning the keyspace.

Statistics, kept by a clear: ``<prefix>:cachestats`` (hash of ``<kind>.hits`` /
``<kind>.misses``, counted by this application, not read from the server) and
``<prefix>:cachestats:popular:<namespace>`` (symbols by times scanned, for the warmer).

The readers that can go on without the cache own their fallback here: ``universe`` and
``results`` answer from their ``load`` and ``read_bars`` reports the cache down. Every other
function raises :class:`CacheUnavailable` when the cache's Redis cannot be reached. After a
failure the process does not try again for ``DOWN_BACKOFF_SECONDS`` so a scan going on uncached
does not wait on every call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, cast

import numpy as np
import redis
from django.conf import settings

from engine.types import Bars, Instrument
from infra.redis_client import cache_redis, int_hash
from market.providers import MarketDataProvider
from market.ttl import TtlPolicy, bars_ttl, results_ttl, universe_ttl, volatility_matters

logger = logging.getLogger(__name__)

KINDS = ("bars", "universe", "results")
DOWN_BACKOFF_SECONDS = 5.0
CLEAR_BATCH = 1000
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# The data stage's lookup in one call: KEYS = stats hash, popularity set, then one bars key per
# symbol of ARGV. Counts hits, misses and each symbol's use; returns the 0-based indexes missing.
_LOOKUP = """
local missed = {}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then missed[#missed + 1] = i - 3 end
  redis.call('ZINCRBY', KEYS[2], 1, ARGV[i - 2])
end
redis.call('HINCRBY', KEYS[1], 'bars.hits', #KEYS - 2 - #missed)
redis.call('HINCRBY', KEYS[1], 'bars.misses', #missed)
return missed
"""
_down_until: dict[str, float] = {}  # CACHE_REDIS_URL -> monotonic time before which it is not tried


class CacheUnavailable(Exception):
    """The cache's Redis cannot be reached."""


def _prefix() -> str:
    return f"{settings.TECHNIC_KEY_PREFIX}:cache"


def _stats_key() -> str:
    return f"{settings.TECHNIC_KEY_PREFIX}:cachestats"


def _index_key(kind: str) -> str:
    return f"{_prefix()}:index:{kind}"


def bars_key(namespace: str, as_of: date, lookback: int, symbol: str) -> str:
    return f"{_prefix()}:bars:{namespace}:{as_of.isoformat()}:{lookback}:{symbol}"


def policy() -> TtlPolicy:
    """The TTLs the settings configure (``TECHNIC_CACHE_TTL_*``), the rest at their defaults."""
    return TtlPolicy(
        market_hours=settings.TECHNIC_CACHE_TTL_MARKET_HOURS,
        finished_day=settings.TECHNIC_CACHE_TTL_FINISHED_DAY,
        results=settings.TECHNIC_CACHE_TTL_RESULTS,
    )


@contextmanager
def _redis() -> Iterator[redis.Redis]:
    """The cache client; connection failures become CacheUnavailable (and a short back-off)."""
    url = settings.CACHE_REDIS_URL
    if time.monotonic() < _down_until.get(url, 0.0):
        raise CacheUnavailable(f"the price cache at {safe_url()} was unreachable moments ago")
    try:
        yield cache_redis()
    except (redis.ConnectionError, redis.TimeoutError) as err:
        _down_until[url] = time.monotonic() + DOWN_BACKOFF_SECONDS
        logger.warning("price cache at %s unreachable: %s", safe_url(), err)
        raise CacheUnavailable(f"the price cache at {safe_url()} is unreachable: {err}") from err


def safe_url() -> str:
    """CACHE_REDIS_URL without its password."""
    url: str = settings.CACHE_REDIS_URL
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


# Bars ---------------------------------------------------------------------------------------


def encode_bars(bars: Bars) -> bytes:
    packed = np.empty((6, len(bars)), dtype="<f8")
    packed[0] = bars.dates.astype("datetime64[D]").astype(np.int64)
    for row, values in enumerate((bars.open, bars.high, bars.low, bars.close, bars.volume), start=1):
        packed[row] = values
    return packed.tobytes()


def decode_bars(data: bytes) -> Bars:
    packed = np.frombuffer(data, dtype="<f8").reshape(6, -1).copy()  # one writable copy, rows as views
    dates = packed[0].astype(np.int64).astype("datetime64[D]")
    return Bars(dates, packed[1], packed[2], packed[3], packed[4], packed[5])


def realised_volatility(bars: Bars, days: int = 20) -> float | None:
    """Annualised volatility of the last ``days`` daily log returns (None if too short)."""
    close = bars.close[-(days + 1) :]
    if len(close) < days + 1 or not np.all(close > 0):
        return None
    return float(np.std(np.diff(np.log(close)), ddof=1) * np.sqrt(252))


def put_bars(namespace: str, as_of: date, lookback: int, bars: Mapping[str, Bars], now: datetime | None = None) -> None:
    """Store bars, each with its TTL from the policy (one round trip)."""
    if not bars:
        return
    now = now or datetime.now(UTC)
    volatile_matters = volatility_matters(as_of, now)  # only bars of today's open session
    expiries: dict[str, float] = {}
    with _redis() as client:
        pipe = client.pipeline(transaction=False)
        for symbol, b in bars.items():
            key = bars_key(namespace, as_of, lookback, symbol)
            ttl = bars_ttl(as_of, now, realised_volatility(b) if volatile_matters else None, policy())
            pipe.set(key, encode_bars(b), ex=ttl)
            expiries[key] = now.timestamp() + ttl
        pipe.zadd(_index_key("bars"), expiries)
        pipe.execute()


def missing(namespace: str, as_of: date, lookback: int, symbols: Sequence[str]) -> list[str]:
    """The symbols whose bars are not cached: the data stage's lookup. Counts hits and misses
    and how often each symbol is scanned."""
    if not symbols:
        return []
    keys = [_stats_key(), _popular_key(namespace), *(bars_key(namespace, as_of, lookback, s) for s in symbols)]
    with _redis() as client:
        missed = client.eval(_LOOKUP, len(keys), *keys, *symbols)
    return [symbols[i] for i in missed]


def get_bars(namespace: str, as_of: date, lookback: int, symbols: Sequence[str]) -> tuple[dict[str, Bars], list[str]]:
    """Cached bars of ``symbols`` and the symbols that were not there (not counted as lookups)."""
    if not symbols:
        return {}, []
    with _redis() as client:
        values = client.mget([bars_key(namespace, as_of, lookback, s) for s in symbols])
    found = {s: decode_bars(cast(bytes, v)) for s, v in zip(symbols, values, strict=True) if v is not None}
    return found, [s for s, v in zip(symbols, values, strict=True) if v is None]


def read_bars(
    namespace: str, as_of: date, lookback: int, symbols: Sequence[str]
) -> tuple[dict[str, Bars], list[str], bool]:
    """``get_bars`` for readers that go on without the cache: (found, missed, down); with the
    cache down nothing is found and ``down`` is True."""
    try:
        found, missed = get_bars(namespace, as_of, lookback, symbols)
    except CacheUnavailable:
        return {}, list(symbols), True
    return found, missed, False


def remaining_seconds(namespace: str, as_of: date, lookback: int, symbols: Sequence[str]) -> dict[str, float]:
    """Seconds each symbol's bars have left (-2 when absent), not counted as lookups."""
    with _redis() as client:
        pipe = client.pipeline(transaction=False)
        for s in symbols:
            pipe.pttl(bars_key(namespace, as_of, lookback, s))
        left = pipe.execute()
    return {s: (ms / 1000 if ms >= 0 else -2.0) for s, ms in zip(symbols, left, strict=True)}


# Universe and results: read-through ----------------------------------------------------------


def universe(namespace: str, load: Callable[[], Sequence[Instrument]]) -> list[Instrument]:
    """The instruments of ``namespace``, from the cache or from ``load`` (then cached)."""
    key = f"{_prefix()}:universe:{namespace}"
    cached = _read_through(
        "universe",
        key,
        lambda: [[i.symbol, i.name, i.sector] for i in load()],
        lambda now: universe_ttl(now, policy()),
    )
    return [Instrument(symbol, name, sector) for symbol, name, sector in cached]


def results(scan_id: Any, load: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A finished scan's ranked rows, from the cache or from ``load`` (then cached). Only for
    finished scans: their rows never change."""
    return cast(
        list[dict[str, Any]],
        _read_through("results", f"{_prefix()}:results:{scan_id}", load, lambda now: results_ttl(policy())),
    )


def _read_through(kind: str, key: str, load: Callable[[], Any], ttl_of: Callable[[datetime], int]) -> Any:
    """The cached value, else ``load()`` (then cached). With the cache down, ``load()`` answers
    uncached: a read never fails because the cache does."""
    try:
        with _redis() as client:
            raw = client.get(key)
            client.hincrby(_stats_key(), f"{kind}.hits" if raw is not None else f"{kind}.misses", 1)
    except CacheUnavailable:
        return load()
    if raw is not None:
        return json.loads(raw)
    value = load()
    now = datetime.now(UTC)
    ttl = ttl_of(now)
    with contextlib.suppress(CacheUnavailable), _redis() as client:
        pipe = client.pipeline(transaction=False)
        pipe.set(key, json.dumps(value, separators=(",", ":")), ex=ttl)
        pipe.zadd(_index_key(kind), {key: now.timestamp() + ttl})
        pipe.execute()
    return value


# Statistics ------------------------------------------------------------------------------------


def counters() -> dict[str, dict[str, int]]:
    """Hits and misses per kind, as counted by this application since the counters began."""
    with _redis() as client:
        raw = client.hgetall(_stats_key())
    flat = int_hash(raw)
    return {kind: {"hits": flat.get(f"{kind}.hits", 0), "misses": flat.get(f"{kind}.misses", 0)} for kind in KINDS}


def key_counts(now: float | None = None) -> dict[str, int]:
    """Live keys per kind, from the index (expired entries pruned first). Keys the server
    evicted under memory pressure are counted until their TTL passes."""
    now = time.time() if now is None else now
    with _redis() as client:
        pipe = client.pipeline(transaction=False)
        for kind in KINDS:
            pipe.zremrangebyscore(_index_key(kind), "-inf", now)
            pipe.zcard(_index_key(kind))
        answers = pipe.execute()
    return {kind: int(answers[2 * i + 1]) for i, kind in enumerate(KINDS)}


def server_info() -> dict[str, Any]:
    """The cache server's INFO (server, clients, memory and stats sections) and a ping's round trip."""
    with _redis() as client:
        started = time.perf_counter()
        client.ping()
        latency = time.perf_counter() - started
        info: dict[str, Any] = {}
        for section in ("server", "clients", "memory", "stats"):
            info.update(client.info(section))
    info["ping_ms"] = round(latency * 1000, 3)
    return info


def _popular_key(namespace: str) -> str:
    return f"{_stats_key()}:popular:{namespace}"


def popular(namespace: str, n: int) -> list[str]:
    """The ``n`` symbols of ``namespace`` scanned most often, most first."""
    with _redis() as client:
        members = cast(list[bytes], client.zrevrange(_popular_key(namespace), 0, n - 1))
    return [s.decode() for s in members]


# Clear and lock ------------------------------------------------------------------------------


def clear() -> int:
    """Remove every key under the cache's prefix (SCAN and UNLINK in batches; never FLUSHDB,
    never a key outside the prefix). Returns how many keys were removed."""
    removed = 0
    with _redis() as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{_prefix()}:*", count=CLEAR_BATCH):
            batch.append(key)
            if len(batch) >= CLEAR_BATCH:
                removed += client.unlink(*batch)
                batch = []
        if batch:
            removed += client.unlink(*batch)
    return removed


@contextmanager
def lock(name: str, seconds: int) -> Iterator[bool]:
    """Hold the lock ``name`` for at most ``seconds``; yields False (and holds nothing) when
    someone else holds it. Released only by its holder."""
    key, token = f"{settings.TECHNIC_KEY_PREFIX}:cachelock:{name}", uuid.uuid4().hex
    with _redis() as client:
        acquired = bool(client.set(key, token, nx=True, ex=seconds))
    try:
        yield acquired
    finally:
        if acquired:
            with _redis() as client:
                client.eval(_RELEASE, 1, key, token)


def locked(name: str) -> bool:
    with _redis() as client:
        return bool(client.exists(f"{settings.TECHNIC_KEY_PREFIX}:cachelock:{name}"))


def fill(
    provider: MarketDataProvider, namespace: str, as_of: date, lookback: int, symbols: Sequence[str]
) -> tuple[int, int]:
    """The data stage's step for ``symbols``: look them up (counted) and put the bars of those
    missing into the cache. Returns (hits, misses). Raises CacheUnavailable."""
    missed = missing(namespace, as_of, lookback, symbols)
    put_bars(namespace, as_of, lookback, provider.bars(missed, as_of, lookback))
    return len(symbols) - len(missed), len(missed)
