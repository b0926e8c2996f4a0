"""Polygon.io daily bars and universe (the ``polygon`` provider).

Endpoints (all ``GET``, the key sent as ``Authorization: Bearer``, so it never appears in a
URL, a log line or an error message):

* per-ticker aggregates ``/v2/aggs/ticker/{T}/range/1/day/{from}/{to}?adjusted=true&sort=asc
  &limit=50000``: one symbol's window in one request (a page holds 50,000 bars, ``next_url``
  is followed when there are more);
* grouped daily ``/v2/aggs/grouped/locale/us/market/stocks/{date}?adjusted=true``: every
  ticker's bar of one day in one request;
* the calendar: the per-ticker aggregates of ``calendar_ticker`` (SPY) from ``history_start``
  to today, one request, kept for an hour;
* the universe: a ``symbol,name,sector`` file when given (no request), else
  ``/v3/reference/tickers?market=stocks&type=CS&active=true&limit=1000`` (paged through
  ``next_url``) and ``/v3/reference/tickers/{T}`` per ticker for its SIC code, mapped to a GICS
  sector (:mod:`market.providers.sic`); kept for a day.

``bars`` picks per call the strategy with fewer requests: per-ticker costs one request per
symbol, grouped one per market day of the window (see :meth:`PolygonProvider.plan`). Every
request goes through :class:`~market.providers.resilience.Resilience`: the breaker first
(fails fast while open), the scope's budget, the shared rate limit, then the request with
connect and read timeouts; 429, 5xx, timeouts and connection errors are retried with backoff.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin
from zoneinfo import ZoneInfo

import numpy as np
import urllib3

from engine.types import Bars, Instrument
from market.providers.base import (
    DataProviderError,
    ProviderAuthError,
    Split,
    calendar_range,
    check_lookback,
    window_copy,
)
from market.providers.files import _read_universe as read_universe_file
from market.providers.resilience import RequestFailed, Resilience, parse_retry_after
from market.providers.sic import gics_sector

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.polygon.io"
HISTORY_YEARS = 5  # default calendar depth: Polygon's Starter plan keeps five years of daily bars
CALENDAR_TTL_SECONDS = 3600.0
UNIVERSE_TTL_SECONDS = 86400.0
AGGS_LIMIT = 50_000
TICKERS_PAGE = 1000
_DAY_MS = 86_400_000
_NEW_YORK = ZoneInfo("America/New_York")
Strategy = Literal["auto", "per_ticker", "grouped"]


@dataclass(frozen=True)
class PolygonConfig:
    """How to reach Polygon. ``concurrency`` requests of one ``bars`` call run at once (the
    shared rate limit still bounds the total); ``strategy`` forces one way of fetching bars."""

    api_key: str
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    concurrency: int = 4
    calendar_ticker: str = "SPY"
    history_start: date | None = None
    strategy: Strategy = "auto"

    def __post_init__(self) -> None:
        if not self.api_key.strip():
            raise DataProviderError("the polygon provider needs an API key: set POLYGON_API_KEY")
        if not self.base_url.startswith(("http://", "https://")):
            raise DataProviderError(f"POLYGON_BASE_URL must be an http(s) URL, got {self.base_url!r}")


class PolygonClient:
    """JSON over HTTP from Polygon, one request at a time per call, made resilient.

    ``get`` returns the decoded body of a 200 answer. Raises :class:`ProviderAuthError` on
    401/403 at once (no retry), :class:`RequestFailed` when one request gives up (retries
    exhausted, another 4xx, a malformed body), and the breaker's or the budget's errors when
    nothing may be sent. Thread-safe.
    """

    def __init__(self, config: PolygonConfig, resilience: Resilience, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.resilience = resilience
        self.sleep = sleep
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=max(1, config.concurrency),
            timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
            retries=False,
            headers={"Authorization": f"Bearer {config.api_key}", "Accept": "application/json"},
        )

    def get(self, path_or_url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        url = urljoin(self.config.base_url.rstrip("/") + "/", path_or_url.lstrip("/"))
        shown = url.split("?")[0]
        r = self.resilience
        last = ""
        for attempt in range(r.policy.max_retries + 1):
            if attempt:
                r.ledger.note("retried")
            permit = r.breaker.permit()
            r.ledger.spend()
            r.limiter.wait(self.sleep)
            try:
                response = self._http.request("GET", url, fields=params)
            except urllib3.exceptions.HTTPError as err:
                permit.failed()
                r.ledger.note("failed")
                last = _transport_error(err, self.config)
                delay = r.policy.delay(attempt)
            else:
                status = response.status
                if status == 200:
                    permit.succeeded()
                    return _decode(response.data, shown)
                message = _error_text(response.data)
                if status in (401, 403):
                    permit.succeeded()  # the service answered; only the key is wrong
                    raise ProviderAuthError(f"Polygon rejected the API key (HTTP {status}: {message})")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if status == 429:
                    permit.succeeded()
                    r.ledger.note("throttled")
                    delay = r.policy.delay(attempt, retry_after)
                    r.limiter.hold(delay)
                elif status >= 500:
                    permit.failed()
                    r.ledger.note("failed")
                    delay = r.policy.delay(attempt, retry_after)
                else:
                    permit.succeeded()
                    raise RequestFailed(f"{shown}: HTTP {status}: {message}")
                last = f"HTTP {status}: {message}"
                if delay > r.policy.retry_after_max:
                    raise RequestFailed(f"{shown}: {last}; asked to wait {delay:.0f} s, more than allowed")
            if attempt < r.policy.max_retries:
                self.sleep(delay)
        raise RequestFailed(f"{shown}: gave up after {r.policy.max_retries + 1} attempts: {last}")

    def pages(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Each page of a paged answer, following ``next_url`` (one request per page)."""
        page = self.get(path, params)
        yield page
        while page.get("next_url"):
            page = self.get(str(page["next_url"]))
            yield page


class PolygonProvider:
    """Daily bars and universe from Polygon.io (see the module docstring for the endpoints)."""

    name = "polygon"
    synthetic = False

    def __init__(
        self,
        config: PolygonConfig,
        resilience: Resilience,
        universe_path: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.resilience = resilience
        self.universe_path = Path(universe_path) if universe_path else None
        self.client = PolygonClient(config, resilience, sleep)
        self._lock = threading.Lock()
        self._calendar: tuple[float, np.ndarray] | None = None
        self._universe: tuple[float, list[Instrument]] | None = None

    # --- the MarketDataProvider interface -------------------------------------------------

    def instruments(self) -> list[Instrument]:
        with self._lock:
            if self._universe is None or time.monotonic() - self._universe[0] > UNIVERSE_TTL_SECONDS:
                self._universe = (time.monotonic(), self._read_universe())
            return list(self._universe[1])

    def calendar(self) -> np.ndarray:
        """Market days: the dates of ``calendar_ticker``'s bars, refreshed every hour (so a
        new day appears without restarting the workers)."""
        with self._lock:
            if self._calendar is None or time.monotonic() - self._calendar[0] > CALENDAR_TTL_SECONDS:
                self._calendar = (time.monotonic(), self.read_calendar())
            return self._calendar[1]

    def date_range(self) -> tuple[date, date]:
        return calendar_range(self.calendar())

    def bars(self, symbols: Sequence[str], as_of: date, lookback: int) -> dict[str, Bars]:
        return self.bars_and_failures(symbols, as_of, lookback)[0]

    def bars_and_failures(
        self, symbols: Sequence[str], as_of: date, lookback: int
    ) -> tuple[dict[str, Bars], dict[str, str]]:
        """Bars of ``symbols`` (as ``bars``) and ``{symbol: error}`` for those whose requests
        gave up. Raises when nothing more may be sent (breaker open, budget spent, bad key):
        then the provider, not a symbol, is the problem."""
        check_lookback(lookback)
        wanted = list(dict.fromkeys(symbols))
        days = self.window_days(as_of, lookback)
        if not wanted or days.size == 0:
            return {}, {}
        if self.choose(len(wanted), days.size) == "grouped":
            return self._grouped(wanted, days, as_of, lookback)
        first, last = days[0].astype(object), days[-1].astype(object)
        return self._each(wanted, lambda s: self._ticker_bars(s, first, last, as_of, lookback))

    # --- request planning -----------------------------------------------------------------

    def window_days(self, as_of: date, lookback: int) -> np.ndarray:
        """The market days of a ``lookback``-bar window ending on or before ``as_of``."""
        cal = self.calendar()
        end = int(np.searchsorted(cal, np.datetime64(as_of, "D"), side="right"))
        return cal[max(0, end - lookback) : end]

    @staticmethod
    def plan(n_symbols: int, n_days: int) -> dict[str, int]:
        """Requests one ``bars`` call costs each way, when nothing is retried: per-ticker one per
        symbol (a page holds 50,000 bars), grouped one per market day of the window."""
        return {"per_ticker": n_symbols * max(1, -(-n_days // AGGS_LIMIT)), "grouped": n_days}

    def choose(self, n_symbols: int, n_days: int) -> Literal["per_ticker", "grouped"]:
        """Grouped only when it needs at most half the requests: each grouped answer carries
        every US ticker's bar (about 10,000 rows, 1.5 MB), ~30 times a 500-bar window's bytes."""
        if self.config.strategy != "auto":
            return self.config.strategy
        counts = self.plan(n_symbols, n_days)
        return "grouped" if 2 * counts["grouped"] <= counts["per_ticker"] else "per_ticker"

    # --- what the market data store asks (market.store.Remote) -------------------------------

    grouped_weight = 2
    """A grouped-daily request counts as two per-ticker ones when planning (see ``choose``)."""

    def fetch_ranges(self, symbols: Sequence[str], first: date, last: date) -> tuple[dict[str, Bars], dict[str, str]]:
        """Each symbol's bars from ``first`` to ``last`` (one per-ticker request each; a symbol
        without bars there is absent) and ``{symbol: error}`` for those whose request gave up."""
        return self._each(list(dict.fromkeys(symbols)), lambda s: self._range_bars(s, first, last))

    def fetch_days(self, days: Sequence[date]) -> tuple[dict[date, dict[str, Bars]], dict[date, str]]:
        """Every ticker's bar of each market day (one grouped-daily request each), as one-bar
        Bars per symbol, and ``{day: error}`` for the days that failed."""
        got: dict[date, dict[str, Bars]] = {}

        def one_day(day: str) -> None:
            by_symbol: dict[str, Bars] = {}
            for row in self._grouped_day(day):
                try:
                    by_symbol[str(row["T"])] = _bars_of([row], f"{row.get('T')} grouped daily of {day}")
                except (RequestFailed, KeyError) as err:
                    logger.warning("polygon: %s", err)
            got[date.fromisoformat(day)] = by_symbol

        _, failed = self._each([d.isoformat() for d in days], one_day)
        return got, {date.fromisoformat(d): error for d, error in failed.items()}

    def splits(self, after: date, through: date) -> list[Split]:
        """Splits executed after ``after`` up to ``through``, from ``/v3/reference/splits``."""
        params = {
            "execution_date.gt": after.isoformat(),
            "execution_date.lte": through.isoformat(),
            "limit": "1000",
            "order": "asc",
            "sort": "execution_date",
        }
        out: list[Split] = []
        for page in self.client.pages("/v3/reference/splits", params):
            for row in page.get("results") or []:
                try:
                    ratio = float(row["split_to"]) / float(row["split_from"])
                    out.append(Split(str(row["ticker"]), date.fromisoformat(str(row["execution_date"])), ratio))
                except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
                    raise RequestFailed(f"/v3/reference/splits: malformed split {row!r} ({err})") from err
        return out

    # --- fetching ---------------------------------------------------------------------------

    def _each(self, keys: Sequence[str], fetch: Callable[[str], Bars | None]) -> tuple[dict[str, Bars], dict[str, str]]:
        """``fetch`` each key on ``concurrency`` threads (each in a copy of this context, so
        the request scope follows); a key whose request gave up is a failure, any other
        error stops the lot and propagates."""
        out: dict[str, Bars] = {}
        failures: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            futures: dict[str, Future[Bars | None]] = {
                key: pool.submit(contextvars.copy_context().run, fetch, key) for key in keys
            }
            try:
                for key, future in futures.items():
                    try:
                        got = future.result()
                    except RequestFailed as err:
                        failures[key] = str(err)
                        logger.warning("polygon: %s", err)
                        continue
                    if got is not None:
                        out[key] = got
            except DataProviderError:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return out, failures

    def _ticker_bars(self, symbol: str, first: date, last: date, as_of: date, lookback: int) -> Bars | None:
        bars = self._range_bars(symbol, first, last)
        return None if bars is None else window_copy(bars, as_of, lookback)

    def _range_bars(self, symbol: str, first: date, last: date) -> Bars | None:
        path = f"/v2/aggs/ticker/{quote(symbol, safe='')}/range/1/day/{first.isoformat()}/{last.isoformat()}"
        rows: list[dict[str, Any]] = []
        for page in self.client.pages(path, {"adjusted": "true", "sort": "asc", "limit": str(AGGS_LIMIT)}):
            rows.extend(page.get("results") or [])
        return _bars_of(rows, f"{symbol} aggregates") if rows else None

    def _grouped(
        self, symbols: list[str], days: np.ndarray, as_of: date, lookback: int
    ) -> tuple[dict[str, Bars], dict[str, str]]:
        wanted = set(symbols)
        per_day: dict[str, list[dict[str, Any]]] = {}

        def one_day(day: str) -> None:
            per_day[day] = [r for r in self._grouped_day(day) if r.get("T") in wanted]

        _, failed = self._each([str(d) for d in days], one_day)
        if failed:
            day, error = next(iter(failed.items()))
            reason = f"grouped daily bars of {len(failed)} day(s) failed, e.g. {day}: {error}"
            return {}, dict.fromkeys(symbols, reason)
        rows: dict[str, list[dict[str, Any]]] = {}
        for day in sorted(per_day):
            for row in per_day[day]:
                rows.setdefault(str(row["T"]), []).append(row)
        out: dict[str, Bars] = {}
        failures: dict[str, str] = {}
        for symbol, symbol_rows in rows.items():
            try:
                win = window_copy(_bars_of(symbol_rows, f"{symbol} grouped daily"), as_of, lookback)
            except RequestFailed as err:
                failures[symbol] = str(err)
                continue
            if win is not None:
                out[symbol] = win
        return out, failures

    def _grouped_day(self, day: str) -> list[dict[str, Any]]:
        """Every symbol's bar of the market day ``day``. Polygon sometimes answers a trading
        day's grouped bars with ``results: null`` under load; a market day of the calendar always
        has bars, so that answer is retried like a 5xx and, when it persists, the day fails
        (RequestFailed) instead of reading as a day without bars."""
        policy = self.client.resilience.policy
        for attempt in range(policy.max_retries + 1):
            page = self.client.get(f"/v2/aggs/grouped/locale/us/market/stocks/{day}", {"adjusted": "true"})
            rows = page.get("results")
            if rows:
                return list(rows)
            if attempt < policy.max_retries:
                self.client.resilience.ledger.note("retried")
                self.client.sleep(policy.delay(attempt))
        raise RequestFailed(f"grouped daily bars of {day}: no rows in {policy.max_retries + 1} answers of a market day")

    def read_calendar(self) -> np.ndarray:
        """The market days, read now (one request): the dates of ``calendar_ticker``'s bars."""
        today = datetime.now(_NEW_YORK).date()
        start = self.config.history_start or history_start_default(today)
        ticker = self.config.calendar_ticker
        path = f"/v2/aggs/ticker/{quote(ticker, safe='')}/range/1/day/{start.isoformat()}/{today.isoformat()}"
        days: list[int] = []
        for page in self.client.pages(path, {"adjusted": "true", "sort": "asc", "limit": str(AGGS_LIMIT)}):
            days.extend(int(r["t"]) // _DAY_MS for r in page.get("results") or [])
        if not days:
            raise DataProviderError(
                f"Polygon has no daily bars of {ticker} from {start} to {today}, so there is no market calendar; "
                "check POLYGON_CALENDAR_TICKER and POLYGON_HISTORY_START against your plan"
            )
        calendar = np.unique(np.array(days, dtype="datetime64[D]"))
        calendar.flags.writeable = False
        return calendar

    def _read_universe(self) -> list[Instrument]:
        if self.universe_path is not None:
            return read_universe_file(self.universe_path)
        listed: dict[str, str] = {}
        params = {"market": "stocks", "type": "CS", "active": "true", "limit": str(TICKERS_PAGE)}
        for page in self.client.pages("/v3/reference/tickers", params):
            for row in page.get("results") or []:
                listed[str(row["ticker"])] = str(row.get("name") or "")
        sectors: dict[str, str] = {}

        def sector_of(ticker: str) -> None:
            details = self.client.get(f"/v3/reference/tickers/{quote(ticker, safe='')}").get("results") or {}
            sectors[ticker] = gics_sector(details.get("sic_code"))

        _, failed = self._each(sorted(listed), sector_of)
        if failed:
            ticker, error = next(iter(failed.items()))
            raise RequestFailed(f"sectors of {len(failed)} tickers could not be read, e.g. {ticker}: {error}")
        return [Instrument(t, listed[t], sectors[t]) for t in sorted(listed)]


def _bars_of(rows: list[dict[str, Any]], what: str) -> Bars:
    """Aggregate rows (``t`` in ms at midnight New York, which is the same date in UTC) as Bars."""
    try:
        days = np.array([int(r["t"]) // _DAY_MS for r in rows], dtype=np.int64)
        values = [np.array([float(r[k]) for r in rows], dtype=np.float64) for k in ("o", "h", "l", "c", "v")]
    except (KeyError, TypeError, ValueError) as err:
        raise RequestFailed(f"{what}: malformed bar ({type(err).__name__}: {err})") from err
    if np.any(days[1:] <= days[:-1]):
        raise RequestFailed(f"{what}: bars not in strictly increasing date order")
    return Bars(days.astype("datetime64[D]"), *values)


def _decode(data: bytes, shown: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError as err:
        raise RequestFailed(f"{shown}: answer is not JSON ({err})") from err
    if not isinstance(body, dict) or body.get("status") not in ("OK", "DELAYED"):
        status = body.get("status") if isinstance(body, dict) else type(body).__name__
        raise RequestFailed(f"{shown}: answer status {status!r}: {_error_text(data)}")
    return body


def _error_text(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return data[:200].decode(errors="replace").strip() or "(empty body)"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body.get("status") or "")[:300]
    return str(body)[:300]


def _transport_error(err: urllib3.exceptions.HTTPError, config: PolygonConfig) -> str:
    if isinstance(err, urllib3.exceptions.ReadTimeoutError):
        return f"no answer within the read timeout of {config.read_timeout:g} s"
    if isinstance(err, urllib3.exceptions.NewConnectionError):  # a subclass of ConnectTimeoutError
        return f"cannot connect to {config.base_url}: {err.__cause__ or err}"
    if isinstance(err, urllib3.exceptions.ConnectTimeoutError):
        return f"could not connect within {config.connect_timeout:g} s"
    return f"{type(err).__name__}: {err}"


def history_start_default(today: date | None = None) -> date:
    """The first calendar day asked for when ``history_start`` is not set."""
    today = today or datetime.now(_NEW_YORK).date()
    return today - timedelta(days=365 * HISTORY_YEARS)
