"""Evaluating a checked expression tree over arrays.

``evaluate(node, source, k)`` gives the node's values on each row's last ``k`` bars as an
``(S, k)`` array; a plain comparison needs ``k = 1``, and each history function asks its
arguments for just the bars it reads (``highest(x, 20)`` on one bar reads x on 20), so a filter
costs a few short windows, not whole series, unless a field has no shortcut. Undefined is NaN
and propagates: arithmetic with it, a comparison with it, ``not`` of it are undefined; ``and``
is false when any side is false and ``or`` true when any is true (three-valued logic).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.screens.language import Node
from engine.screens.series import Source, compare

Lookup = Callable[[Node, int], np.ndarray | None]


def evaluate(node: Node, source: Source, k: int = 1, lookup: Lookup | None = None) -> np.ndarray:
    """``node`` over the last ``k`` bars of every row of ``source``. ``lookup`` may answer a
    node over ``k`` bars from values computed earlier; None means "compute it"."""
    if lookup is not None:
        known = lookup(node, k)
        if known is not None:
            return known
    kind = node.kind
    if kind in ("number", "boolean"):
        return np.full((source.panel.n_symbols, k), float(node.value))
    if kind == "name":
        return source.tail(node.value, k)
    if kind == "call":
        return _call(node, source, k, lookup)
    values = [evaluate(a, source, k, lookup) for a in node.args]
    if kind == "minus":
        return -values[0]
    if kind == "not":
        return 1.0 - values[0]
    if kind == "compare":
        return compare(values[0], values[1], node.value)
    if kind == "arith":
        out = values[0]
        for op, right in zip(node.value, values[1:], strict=True):
            out = _arith(out, right, op)
        return out
    if kind == "and":
        return _kleene(values, decisive=0.0)
    return _kleene(values, decisive=1.0)


def _arith(a: np.ndarray, b: np.ndarray, op: str) -> np.ndarray:
    with np.errstate(all="ignore"):
        out = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[op](a, b)
    out[~np.isfinite(out)] = np.nan  # x / 0, 0 / 0 and overflow are undefined
    return out


def _kleene(values: list[np.ndarray], decisive: float) -> np.ndarray:
    """and (``decisive`` 0: any false makes it false) or or (1: any true makes it true);
    otherwise undefined when any side is, else the other value."""
    stacked = np.stack(values)
    out = np.where(np.isnan(stacked).any(axis=0), np.nan, 1.0 - decisive)
    out[(stacked == decisive).any(axis=0)] = decisive
    return out


def _window(x: np.ndarray, n: int) -> np.ndarray:
    """``(S, k, n)``: for each of the last ``k`` bars, the ``n`` values ending there (x holds
    ``k + n - 1`` columns)."""
    return sliding_window_view(x, n, axis=1)


def _call(node: Node, source: Source, k: int, lookup: Lookup | None) -> np.ndarray:
    name, args = node.value, node.args
    if name == "weekly":
        return np.repeat(evaluate(args[0], source.weekly(), 1), k, axis=1)
    if name in ("abs", "min", "max"):
        values = [evaluate(a, source, k, lookup) for a in args]
        if name == "abs":
            return np.abs(values[0])
        return (np.minimum if name == "min" else np.maximum)(values[0], values[1])
    n = int(args[-1].value)
    if name == "ago":
        return evaluate(args[0], source, k + n, lookup)[:, :k]
    if name == "change":
        x = evaluate(args[0], source, k + n, lookup)
        return _arith(_arith(x[:, n:], x[:, :k], "/"), np.ones((1, 1)), "-")
    if name in ("crossed_above", "crossed_below"):
        a = evaluate(args[0], source, k + n, lookup)
        b = evaluate(args[1], source, k + n, lookup)
        before, after = ("<=", ">") if name == "crossed_above" else (">=", "<")
        crossed = _kleene([compare(a[:, :-1], b[:, :-1], before), compare(a[:, 1:], b[:, 1:], after)], 0.0)
        w = _window(crossed, n)  # each bar's crossings of the n bars ending there
        out = np.where(np.isnan(w).any(axis=-1), np.nan, 0.0)
        out[(w == 1.0).any(axis=-1)] = 1.0
        return out
    x = evaluate(args[0], source, k + n - 1, lookup)
    w = _window(x, n)
    if name == "highest":
        return np.asarray(w.max(axis=-1))
    if name == "lowest":
        return np.asarray(w.min(axis=-1))
    if name == "average":
        return np.asarray(w.mean(axis=-1))
    if name == "count":
        return np.asarray(w.sum(axis=-1))
    raise ValueError(f"no evaluation for function {name}")  # the catalogue and this must agree
