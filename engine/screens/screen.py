"""A screen in a scan: its filter and ranking evaluated per chunk, and what waits for finalization.

``evaluate_chunk`` runs in the batches: every clause of the filter (its top-level ``and``
operands) that needs no other symbol, each named field's and call's value on the last bar, the
ranking value, and each symbol's relative strength score. Clauses and rankings that use the
cross-sectional ``rs_rating`` are evaluated by ``cross_section`` once every batch has reported,
over the values the batches recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.stats import rankdata

from engine.screens.evaluate import Lookup, evaluate
from engine.screens.language import Expression, Node, ScreenError, parse
from engine.screens.series import Source

ORDERS = ("desc", "asc")
RS_WEIGHTS = {63: 0.4, 126: 0.2, 189: 0.2, 252: 0.2}
DETAIL_CHARS = 400


@dataclass(frozen=True)
class Screen:
    """A parsed filter (None: every symbol matches) and ranking (None: the default ranking)."""

    filter: Expression | None
    rank_by: Expression | None
    order: str = "desc"

    @property
    def expressions(self) -> list[Expression]:
        return [e for e in (self.filter, self.rank_by) if e is not None]

    @property
    def needs_strength(self) -> bool:
        """Whether the scan must record each eligible symbol's strength (rs_rating is used)."""
        return any(e.root.cross for e in self.expressions)

    @property
    def needs_benchmark(self) -> bool:
        return any(_uses_rs(e.root) for e in self.expressions)

    def batch_clauses(self) -> list[Node]:
        """The filter's clauses each batch evaluates (those without ``rs_rating``), in order."""
        return [c for c in (self.filter.clauses if self.filter else ()) if not c.cross]

    def final_clauses(self) -> list[Node]:
        """The clauses finalization evaluates (those with ``rs_rating``), in order."""
        return [c for c in (self.filter.clauses if self.filter else ()) if c.cross]

    def as_dict(self) -> dict[str, Any]:
        return {
            "filter": self.filter.text if self.filter else "",
            "rank_by": self.rank_by.text if self.rank_by else "",
            "order": self.order,
        }


def _uses_rs(node: Node) -> bool:
    return (node.kind == "name" and node.value in ("rs_21d", "rs_63d", "rs_252d")) or any(
        _uses_rs(a) for a in node.args
    )


def screen_of(filter_text: str = "", rank_by: str = "", order: str = "desc") -> Screen | None:
    """The screen of a scan's options, None when it has neither filter nor ranking. Raises
    ScreenError (field ``filter``, ``rank_by`` or ``order``)."""
    return _screen_of(filter_text, rank_by, order)


@lru_cache(maxsize=256)
def _screen_of(filter_text: str, rank_by: str, order: str) -> Screen | None:
    if order not in ORDERS:
        raise ScreenError("order", f"order must be desc or asc, got {order!r}", 0, list(ORDERS), list(ORDERS))
    f = parse(filter_text, "filter", "boolean") if filter_text.strip() else None
    r = parse(rank_by, "rank_by", "number") if rank_by.strip() else None
    return None if f is None and r is None else Screen(f, r, order)


@dataclass(frozen=True, eq=False)
class ChunkScreen:
    """A chunk's screen outcome: ``matched`` per row by the batch's clauses (1, 0 or NaN),
    ``strength`` the relative strength score (None unless the screen needs it); ``values(i)``
    and ``failure(i)`` build row ``i``'s ``screen`` values and not_matched detail on demand
    (most rows need one of them, none both)."""

    matched: np.ndarray
    strength: np.ndarray | None
    columns: dict[str, np.ndarray]
    types: dict[str, str]
    failing: np.ndarray  # per row, the clause that first was not true (-1: none)
    clauses: list[tuple[str, list[str], np.ndarray]]  # text, the texts it names, its results

    def values(self, i: int) -> dict[str, Any]:
        return {text: json_value(column[i], self.types[text]) for text, column in self.columns.items()}

    def failure(self, i: int) -> str:
        """'rsi_14 < 30' is false (rsi_14 = 45.2): the clause, and the values of what it names."""
        text, named, results = self.clauses[int(self.failing[i])]
        return _failure(text, float(results[i]), {t: json_value(self.columns[t][i], self.types[t]) for t in named})


def evaluate_chunk(screen: Screen, source: Source) -> ChunkScreen:
    """Everything of ``screen`` that can be known from this chunk's own bars."""
    s = source.panel.n_symbols
    matched = np.ones(s)
    failing = np.full(s, -1)
    columns: dict[str, np.ndarray] = {}
    for expr in screen.expressions:
        for leaf in expr.leaves:
            text = expr.source(leaf)
            if text not in columns and not leaf.cross:
                columns[text] = evaluate(leaf, source)[:, 0]

    def known(expr: Expression) -> Lookup:
        def lookup(node: Node, k: int) -> np.ndarray | None:
            column = columns.get(expr.source(node)) if k == 1 and node.kind in ("name", "call") else None
            return None if column is None else column[:, None]

        return lookup

    clauses: list[tuple[str, list[str], np.ndarray]] = []
    if screen.filter is not None:
        for clause in screen.batch_clauses():
            result = evaluate(clause, source, 1, known(screen.filter))[:, 0]
            failing[(result != 1.0) & (matched == 1.0)] = len(clauses)
            matched[result != 1.0] = 0.0
            clauses.append((screen.filter.source(clause), _named(screen.filter, clause), result))
    if screen.rank_by is not None and not screen.rank_by.root.cross:
        columns[screen.rank_by.text] = evaluate(screen.rank_by.root, source, 1, known(screen.rank_by))[:, 0]
    strength = relative_strength_score(source) if screen.needs_strength else None
    return ChunkScreen(matched, strength, columns, _types(screen), failing, clauses)


def relative_strength_score(source: Source) -> np.ndarray:
    """0.4 ret_63d + 0.2 ret_126d + 0.2 ret_189d + 0.2 ret_252d on each row's last bar."""
    return sum(w * source.tail(f"ret_{k}d", 1)[:, 0] for k, w in RS_WEIGHTS.items())  # type: ignore[return-value]


def json_value(value: float, type_: str = "number") -> float | bool | None:
    """A value as the row's JSON holds it: a boolean's as true or false, None when undefined."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return value == 1.0 if type_ == "boolean" else value


def _types(screen: Screen) -> dict[str, str]:
    """The type of every recorded text (each leaf, and the ranking expression)."""
    out = {e.source(leaf): str(leaf.type) for e in screen.expressions for leaf in e.leaves}
    if screen.rank_by is not None:
        out[screen.rank_by.text] = "number"
    return out


def _failure(text: str, result: float, values: Mapping[str, Any]) -> str:
    shown = [f"{t} = {_shown(v)}" for t, v in values.items()]
    state = "undefined" if math.isnan(result) else "false"
    detail = f"{text!r} is {state}" + (f" ({', '.join(shown)})" if shown else "")
    return detail if len(detail) <= DETAIL_CHARS else detail[: DETAIL_CHARS - 3] + "..."


def _named(expr: Expression, node: Node) -> list[str]:
    """The texts of the fields and calls ``node`` names (not those inside ``weekly(...)``)."""
    out: dict[str, None] = {}

    def walk(n: Node) -> None:
        if n.kind in ("name", "call"):
            out[expr.source(n)] = None
            if n.kind == "call" and n.value == "weekly":
                return
        for a in n.args:
            walk(a)

    walk(node)
    return list(out)


def _shown(value: Any) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.6g}"


def rs_ratings(strengths: Mapping[str, float | None]) -> dict[str, float | None]:
    """rs_rating of each symbol: 1 + 98 x (its rank - 1) / (N - 1) rounded, over the N symbols
    with a defined strength (average rank for ties; 99 when N is 1); None when undefined."""
    defined = {s: v for s, v in strengths.items() if v is not None and math.isfinite(v)}
    out: dict[str, float | None] = dict.fromkeys(strengths)
    if not defined:
        return out
    symbols = list(defined)
    ranks = rankdata([defined[s] for s in symbols], method="average")
    n = len(symbols)
    for symbol, rank in zip(symbols, ranks, strict=True):
        out[symbol] = 99.0 if n == 1 else float(round(1 + 98 * (rank - 1) / (n - 1)))
    return out


@dataclass(frozen=True)
class Rejected:
    symbol: str
    detail: str


def cross_section(
    screen: Screen, rows: Sequence[dict[str, Any]], strengths: Mapping[str, float | None]
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Finalization's part: ``rs_rating`` for every row from the scan's eligible symbols'
    ``strengths``, then the clauses and ranking that use it. Returns the rows that still match
    (their ``screen.values`` completed) and the rejected ones with the failing clause. Rows
    are not modified."""
    if not screen.needs_strength or not rows:
        return list(rows), []
    ratings = rs_ratings(strengths)
    rating = np.array([_none_nan(ratings.get(r["symbol"])) for r in rows])
    texts: dict[str, np.ndarray] = {}
    for expr in screen.expressions:
        for leaf in expr.leaves:
            text = expr.source(leaf)
            if leaf.kind == "name" and leaf.cross:
                texts[text] = rating
            elif not leaf.cross:
                texts[text] = np.array([_none_nan(r["screen"]["values"].get(text)) for r in rows])

    def lookup(expr: Expression) -> Lookup:
        def known(node: Node, k: int) -> np.ndarray | None:
            if node.kind == "name" or (node.kind == "call" and not node.cross):
                return texts[expr.source(node)][:, None]
            return None

        return known

    source = _RowsSource(len(rows))
    for expr in screen.expressions:  # calls of rs_rating (abs, min, max): computed from it
        for leaf in expr.leaves:
            if leaf.kind == "call" and leaf.cross:
                texts[expr.source(leaf)] = evaluate(leaf, source, 1, lookup(expr))[:, 0]
    types = _types(screen)
    matched = np.ones(len(rows))
    failed: list[str | None] = [None] * len(rows)
    if screen.filter is not None:
        for clause in screen.final_clauses():
            result = evaluate(clause, source, 1, lookup(screen.filter))[:, 0]
            named = _named(screen.filter, clause)
            for j in np.flatnonzero((result != 1.0) & (matched == 1.0)):
                failed[j] = _failure(
                    screen.filter.source(clause), result[j], {t: json_value(texts[t][j], types[t]) for t in named}
                )
            matched[result != 1.0] = 0.0
    if screen.rank_by is not None and screen.rank_by.root.cross:
        texts[screen.rank_by.text] = evaluate(screen.rank_by.root, source, 1, lookup(screen.rank_by))[:, 0]
    kept: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for i, row in enumerate(rows):
        if matched[i] != 1.0:
            rejected.append(Rejected(row["symbol"], failed[i] or "not matched"))
            continue
        values = {**row["screen"]["values"], **{t: json_value(v[i], types[t]) for t, v in texts.items()}}
        kept.append({**row, "screen": {**row["screen"], "values": values}})
    return kept, rejected


def _none_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


class _RowsSource(Source):
    """Finalization evaluates over recorded values only; every field comes from ``lookup``."""

    def __init__(self, n: int) -> None:
        self.panel = _Rows(n)  # type: ignore[assignment]

    def tail(self, name: str, k: int) -> np.ndarray:
        raise ValueError(f"{name} was not recorded by the batches")


@dataclass(frozen=True)
class _Rows:
    n_symbols: int


def rank_value(screen: Screen | None, row: Mapping[str, Any]) -> float | None:
    """The row's ranking value (None: undefined, or no ``rank_by``)."""
    if screen is None or screen.rank_by is None:
        return None
    value = (row.get("screen") or {}).get("values", {}).get(screen.rank_by.text)
    return None if value is None else float(value)
