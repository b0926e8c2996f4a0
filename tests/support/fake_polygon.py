"""A local HTTP server that answers like Polygon.io, serving the real bars of ``prices.parquet``.

Endpoints, in Polygon's JSON formats (``status``, ``request_id``, ``resultsCount``, ``results``,
``next_url``): per-ticker daily aggregates, grouped daily bars, reference tickers (paged), ticker
details (a SIC code standing for the symbol's GICS sector in ``constituents.csv``) and the splits
reference (paged). Bar timestamps ``t`` are milliseconds, as Polygon stamps them: per-ticker
daily bars at midnight New York, grouped daily bars at the session's close (16:00 New York). The
key is accepted as ``Authorization: Bearer <key>`` or ``?apiKey=<key>``; another answers 401.

Time moves with :meth:`FakePolygon.show_until` (days after it do not exist yet), and
:meth:`FakePolygon.split` splits a symbol: once its execution date is visible, ``adjusted=true``
answers (the default) give its whole history at the new level and ``adjusted=false`` only the
bars from the split on, as Polygon does.

Behaviours are scripted with :meth:`FakePolygon.script` (an answer for the next ``times``
matching requests, or for all of them) and every request is logged (:attr:`FakePolygon.log`),
so tests can count exactly what the client sent.
"""

from __future__ import annotations

import csv
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

API_KEY = "test-polygon-key"
RATE_LIMITED = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue. "
    "https://polygon.io/pricing"
)
# A SIC code per GICS sector, so ticker details carry codes the SIC mapping turns back into sectors.
SIC_OF_SECTOR = {
    "Consumer Discretionary": ("5331", "RETAIL-VARIETY STORES"),
    "Consumer Staples": ("2080", "BEVERAGES"),
    "Energy": ("1311", "CRUDE PETROLEUM & NATURAL GAS"),
    "Financials": ("6022", "STATE COMMERCIAL BANKS"),
    "Health Care": ("2834", "PHARMACEUTICAL PREPARATIONS"),
    "Industrials": ("3720", "AIRCRAFT & PARTS"),
    "Information Technology": ("3572", "COMPUTER STORAGE DEVICES"),
    "Materials": ("2810", "INDUSTRIAL INORGANIC CHEMICALS"),
    "Real Estate": ("6798", "REAL ESTATE INVESTMENT TRUSTS"),
    "Telecommunication Services": ("4813", "TELEPHONE COMMUNICATIONS (NO RADIOTELEPHONE)"),
    "Utilities": ("4911", "ELECTRIC SERVICES"),
}
_VALUES = ("open", "high", "low", "close", "volume")
_NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class Rule:
    """Answer requests whose path contains ``match`` this way, ``times`` times (None: always).
    ``hang`` accepts the request and never answers (until the server stops)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang: bool = False
    times: int | None = None
    match: str = "/"


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic()
    path: str
    status: int  # 0 for a request left hanging


class FakePolygon(ThreadingHTTPServer):
    """Polygon on 127.0.0.1 (a free port) over the real bars; ``latency`` seconds per answer."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, market: Path, latency: float = 0.0, page_size: int = 50_000) -> None:
        table = pq.read_table(market / "prices.parquet", columns=["symbol", "date", *_VALUES])
        table = table.take(pc.sort_indices(table, [("symbol", "ascending"), ("date", "ascending")]))
        symbols = table["symbol"].to_numpy(zero_copy_only=False).astype(str)
        names, starts = np.unique(symbols, return_index=True)
        ends = [*starts[1:], len(symbols)]
        self.spans = {str(n): (int(s), int(e)) for n, s, e in zip(names, starts, ends, strict=True)}
        self.days = table["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
        self.values = {c: table[c].to_numpy().astype(np.float64) for c in _VALUES}
        self.ms = {int(d): _new_york_ms(int(d), 0) for d in np.unique(self.days)}
        self.close_ms = {int(d): _new_york_ms(int(d), 16) for d in np.unique(self.days)}
        with (market / "constituents.csv").open(newline="") as fh:
            self.listed = sorted((r["symbol"], r["name"], r["sector"]) for r in csv.DictReader(fh))
        self.latency = latency
        self.page_size = page_size
        self.api_key = API_KEY
        self.rules: list[Rule] = []
        self.log: list[Call] = []
        self.visible_to = int(self.days.max())
        self.splits: list[tuple[str, int, float, float]] = []  # (symbol, execution day, from, to)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, name="fake-polygon", daemon=True)
        self._thread.start()

    # --- scripting and the call log ---------------------------------------------------------

    def script(self, *rules: Rule) -> None:
        """Apply ``rules`` (first matching one wins) before the normal answers."""
        with self._lock:
            self.rules.extend(rules)

    def reset(self) -> None:
        """Normal answers again over every day of the data, no splits, and an empty log."""
        with self._lock:
            self.rules.clear()
            self.log.clear()
            self.visible_to = int(self.days.max())
            self.splits.clear()

    def clear_calls(self) -> None:
        """Empty the call log only."""
        with self._lock:
            self.log.clear()

    # --- time and corporate actions -----------------------------------------------------------

    @property
    def last_day(self) -> date:
        """The last market day that exists now."""
        with self._lock:
            return _date(int(self.days[self.days <= self.visible_to].max()))

    def show_until(self, day: date) -> None:
        """Make ``day`` the last day that exists: later bars, grouped days and splits are not
        answered until it moves on."""
        with self._lock:
            self.visible_to = _day(day)

    def market_days(self) -> list[date]:
        """Every market day of the data (visible or not), in order."""
        return [_date(int(d)) for d in np.unique(self.days)]

    def split(self, symbol: str, execution_date: date, split_from: float, split_to: float) -> None:
        """``symbol`` splits ``split_from``-for-``split_to`` (1, 4: one share becomes four) on
        ``execution_date``: prices from that day on are divided by the ratio and volumes
        multiplied, and (adjusted) so is its history, once the day is visible."""
        if symbol not in self.spans or split_from <= 0 or split_to <= 0:
            raise ValueError(f"cannot split {symbol!r} {split_from}-for-{split_to}")
        with self._lock:
            self.splits.append((symbol, _day(execution_date), float(split_from), float(split_to)))

    def _factors(self, symbol: str, days: np.ndarray, adjusted: bool) -> np.ndarray:
        """Each bar's price divisor from the visible splits of ``symbol``."""
        factor = np.ones(days.size)
        with self._lock:
            splits = [(d, to / fr) for s, d, fr, to in self.splits if s == symbol and d <= self.visible_to]
        for day, ratio in splits:
            factor[(days >= day) | adjusted] *= ratio
        return factor

    def visible_splits(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = [(s, d, fr, to) for s, d, fr, to in self.splits if d <= self.visible_to]
        return [
            {"execution_date": _date(d).isoformat(), "id": f"E{i}", "split_from": fr, "split_to": to, "ticker": s}
            for i, (s, d, fr, to) in enumerate(sorted(rows, key=lambda r: (r[1], r[0])))
        ]

    def calls(self, prefix: str = "/") -> list[Call]:
        with self._lock:
            return [c for c in self.log if c.path.startswith(prefix)]

    def stop(self) -> None:
        self._stopping.set()
        self.shutdown()
        self.server_close()

    def _rule_for(self, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.match in path and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _logged(self, path: str, status: int) -> None:
        with self._lock:
            self.log.append(Call(time.monotonic(), path, status))

    # --- the data -----------------------------------------------------------------------------

    def aggregates(self, symbol: str, first: date, last: date, adjusted: bool = True) -> list[dict[str, Any]]:
        start, end = self.spans.get(symbol, (0, 0))
        days = self.days[start:end]
        lo = start + int(np.searchsorted(days, _day(first), side="left"))
        hi = start + int(np.searchsorted(days, min(_day(last), self.visible_to), side="right"))
        factors = self._factors(symbol, self.days[lo:hi], adjusted)
        return [self._bar(i, f) for i, f in zip(range(lo, hi), factors, strict=True)]

    def grouped(self, day: date, adjusted: bool = True) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if _day(day) > self.visible_to:
            return out
        for symbol, (start, end) in self.spans.items():
            i = start + int(np.searchsorted(self.days[start:end], _day(day)))
            if i < end and self.days[i] == _day(day):
                factor = float(self._factors(symbol, self.days[i : i + 1], adjusted)[0])
                out.append({"T": symbol, **self._bar(i, factor), "t": self.close_ms[int(self.days[i])]})
        return out

    def _bar(self, i: int, factor: float = 1.0) -> dict[str, Any]:
        o, h, low, c = (float(self.values[k][i]) / factor for k in _VALUES[:4])
        v = float(self.values["volume"][i]) * factor
        vw = round((h + low + c) / 3, 4)
        return {"v": v, "vw": vw, "o": o, "c": c, "h": h, "l": low, "t": self.ms[int(self.days[i])], "n": 1}


def _day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _date(day: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day)


def _new_york_ms(day: int, hour: int) -> int:
    d = date.fromordinal(date(1970, 1, 1).toordinal() + day)
    return int(datetime(d.year, d.month, d.day, hour, tzinfo=_NEW_YORK).astimezone(UTC).timestamp() * 1000)


class _Handler(BaseHTTPRequestHandler):
    server: FakePolygon
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        path, query = unquote(split.path), {k: v[-1] for k, v in parse_qs(split.query).items()}
        rule = self.server._rule_for(path)
        if rule is not None and rule.hang:
            self.server._logged(path, 0)
            self.server._stopping.wait(60)
            self.close_connection = True
            return
        if self.server.latency:
            time.sleep(self.server.latency)
        if rule is not None:
            self._answer(path, rule.status, rule.body, rule.headers)
            return
        key = query.get("apiKey") or self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if key != self.server.api_key:
            error = "Unknown API Key" if key else "API Key was not provided"
            self._answer(path, 401, {"status": "ERROR", "request_id": _rid(), "error": error})
            return
        try:
            status, body = self._route(path, query)
        except (ValueError, KeyError) as err:
            status, body = 400, {"status": "ERROR", "request_id": _rid(), "error": f"bad request: {err}"}
        self._answer(path, status, body)

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        base = self.server.url
        if len(parts) == 9 and parts[:3] == ["v2", "aggs", "ticker"] and parts[4:7] == ["range", "1", "day"]:
            symbol, first, last = parts[3], date.fromisoformat(parts[7]), date.fromisoformat(parts[8])
            limit = min(int(query.get("limit", "5000")), self.server.page_size)
            adjusted = _flag(query.get("adjusted", "true"))
            rows = self.server.aggregates(symbol, first, last, adjusted)
            body: dict[str, Any] = {"ticker": symbol, "queryCount": len(rows), "adjusted": adjusted, "status": "OK"}
            if len(rows) > limit:
                rest = datetime.fromtimestamp(rows[limit]["t"] / 1000, _NEW_YORK).date()
                args = urlencode({k: v for k, v in query.items() if k != "apiKey"})
                body["next_url"] = f"{base}/v2/aggs/ticker/{quote(symbol)}/range/1/day/{rest}/{last}?{args}"
                rows = rows[:limit]
            body.update(resultsCount=len(rows), request_id=_rid(), count=len(rows))
            if rows:
                body["results"] = rows
            return 200, body
        if parts[:6] == ["v2", "aggs", "grouped", "locale", "us", "market"] and len(parts) == 8:
            adjusted = _flag(query.get("adjusted", "true"))
            rows = self.server.grouped(date.fromisoformat(parts[7]), adjusted)
            body = {"queryCount": len(rows), "resultsCount": len(rows), "adjusted": adjusted, "status": "OK"}
            if rows:
                body["results"] = rows
            return 200, {**body, "request_id": _rid()}
        if parts == ["v3", "reference", "tickers"]:
            limit, cursor = int(query.get("limit", "100")), int(query.get("cursor", "0"))
            page = self.server.listed[cursor : cursor + limit]
            body = {"results": [_ticker(s, n) for s, n, _ in page], "status": "OK", "request_id": _rid()}
            body["count"] = len(page)
            if cursor + limit < len(self.server.listed):
                body["next_url"] = f"{base}/v3/reference/tickers?cursor={cursor + limit}&limit={limit}"
            return 200, body
        if parts == ["v3", "reference", "splits"]:
            return 200, self._splits(query)
        if parts[:3] == ["v3", "reference", "tickers"] and len(parts) == 4:
            found = [(n, sector) for s, n, sector in self.server.listed if s == parts[3]]
            if not found:
                return 404, {"status": "NOT_FOUND", "request_id": _rid(), "message": "Ticker not found."}
            sic, description = SIC_OF_SECTOR[found[0][1]]
            details = {**_ticker(parts[3], found[0][0]), "sic_code": sic, "sic_description": description}
            return 200, {"results": details, "status": "OK", "request_id": _rid()}
        return 404, {"status": "NOT_FOUND", "request_id": _rid(), "message": "Not found"}

    def _splits(self, query: dict[str, str]) -> dict[str, Any]:
        """``/v3/reference/splits``: filters ``ticker`` and ``execution_date`` (``.gt``, ``.gte``,
        ``.lt``, ``.lte``), ``order`` by execution date, paged by ``limit`` and a cursor."""
        rows = self.server.visible_splits()
        if "ticker" in query:
            rows = [r for r in rows if r["ticker"] == query["ticker"]]
        tests = {"gt": str.__gt__, "gte": str.__ge__, "lt": str.__lt__, "lte": str.__le__, "": str.__eq__}
        for op, test in tests.items():
            bound = query.get(f"execution_date.{op}" if op else "execution_date")
            if bound is not None:
                rows = [r for r in rows if test(r["execution_date"], date.fromisoformat(bound).isoformat())]
        if query.get("order", "asc") == "desc":
            rows.reverse()
        limit, cursor = min(int(query.get("limit", "10")), 1000), int(query.get("cursor", "0"))
        body: dict[str, Any] = {"results": rows[cursor : cursor + limit], "status": "OK", "request_id": _rid()}
        if cursor + limit < len(rows):
            args = urlencode({**{k: v for k, v in query.items() if k != "apiKey"}, "cursor": cursor + limit})
            body["next_url"] = f"{self.server.url}/v3/reference/splits?{args}"
        return body

    def _answer(self, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.server._logged(path, status)  # before answering: a client never sees an unlogged answer
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the call log is in FakePolygon.log."""


def _ticker(symbol: str, name: str) -> dict[str, Any]:
    return {
        "ticker": symbol,
        "name": name,
        "market": "stocks",
        "locale": "us",
        "primary_exchange": "XNYS",
        "type": "CS",
        "active": True,
        "currency_name": "usd",
    }


def _rid() -> str:
    return uuid.uuid4().hex


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(f"adjusted={value!r} is not true or false")
    return value == "true"


def rate_limited(times: int | None, retry_after: float, match: str = "/") -> Rule:
    """Polygon's 429 answer with ``Retry-After``."""
    body = {"status": "ERROR", "request_id": _rid(), "error": RATE_LIMITED}
    return Rule(429, {"Retry-After": f"{retry_after:g}"}, body, times=times, match=match)


def server_error(times: int | None, status: int = 500, match: str = "/") -> Rule:
    body: Any = {"status": "ERROR", "request_id": _rid(), "error": "Internal server error"}
    if status == 502:
        body = "<html><body><h1>502 Bad Gateway</h1></body></html>"  # what a proxy in front answers
    return Rule(status, {}, body, times=times, match=match)


def no_results(times: int | None, match: str = "/v2/aggs/grouped/") -> Rule:
    """What Polygon answers for a trading day's grouped bars under load: 200, ``results: null``."""
    body = {"queryCount": 0, "resultsCount": 0, "adjusted": True, "results": None, "status": "OK", "request_id": _rid()}
    return Rule(200, {}, body, times=times, match=match)


def hanging(times: int | None = None, match: str = "/") -> Rule:
    return Rule(hang=True, times=times, match=match)


def symbols_of(server: FakePolygon) -> Sequence[str]:
    return [s for s, _, _ in server.listed]
