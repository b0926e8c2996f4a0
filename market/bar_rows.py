"""Reading and writing the store's bars (``StoredBar`` rows) in bulk, the costs of a window:
no model instance, date object or tuple per bar where the database allows it. The two databases
the project supports each have their path (PostgreSQL, SQLite)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np
from django.db import connection

from engine.types import Bars
from market.models import StoredBar

_VALUES = ("open", "high", "low", "close", "volume")
WRITE_BATCH = 5000
"""Bars per INSERT statement, about."""


def read(source_id: int, symbols: list[str], first: date, last: date) -> Rows:
    """The bars of ``symbols`` (distinct) from ``first`` to ``last``, in one query."""
    reader = _read_arrays if connection.vendor == "postgresql" else _read_rows
    return reader(source_id, symbols, first, last)


def write(source_id: int, bars: Iterable[tuple[str, Bars]]) -> int:
    """Upsert bars, about WRITE_BATCH per statement (a redelivered fetch writes each bar once;
    a later answer replaces an earlier one). Returns the bars written."""
    batch: list[tuple[str, Bars]] = []
    held = written = 0
    for symbol, b in bars:
        batch.append((symbol, b))
        held += len(b)
        if held >= WRITE_BATCH:
            written += _upsert(source_id, batch)
            batch, held = [], 0
    return written + (_upsert(source_id, batch) if batch else 0)


Rows = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Bars read: each one's position in the symbols asked for, its day (days since 1970-01-01) and
its open, high, low, close and volume (one row each), grouped by symbol and in day order."""


def _read_rows(source_id: int, symbols: list[str], first: date, last: date) -> Rows:
    """SQLite: rows with their day as an integer (no date object per bar), into arrays."""
    table = StoredBar._meta.db_table
    marks = ",".join(["%s"] * len(symbols))
    sql = (
        f"SELECT symbol, CAST(julianday(day) - 2440587.5 AS INTEGER), open, high, low, close, volume FROM {table} "
        f"WHERE source_id = %s AND day BETWEEN %s AND %s AND symbol IN ({marks}) ORDER BY symbol, day"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [source_id, first, last, *symbols])
        rows = cursor.fetchall()
    position = {symbol: i for i, symbol in enumerate(symbols)}
    n = len(rows)
    index = np.fromiter((position[r[0]] for r in rows), np.int64, count=n)
    values = np.fromiter(itertools.chain.from_iterable(r[1:] for r in rows), np.float64, count=6 * n).reshape(n, 6)
    return index, values[:, 0].astype(np.int64), values[:, 1:]


def _read_arrays(source_id: int, symbols: list[str], first: date, last: date) -> Rows:
    """PostgreSQL: each column aggregated into one array in its binary form (``array_send``):
    one row of seven values, read by numpy without an object per bar. One aggregation
    feeds every row to all seven arrays at once, so they line up; they are sorted here."""
    table = StoredBar._meta.db_table
    columns = [
        "array_send(array_agg(w.k::int4))",
        "array_send(array_agg(b.day - DATE '1970-01-01'))",
        *(f"array_send(array_agg(b.{name}))" for name in _VALUES),
    ]
    sql = (
        f"SELECT {', '.join(columns)} FROM {table} b "
        "JOIN unnest(%s::text[]) WITH ORDINALITY AS w(symbol, k) ON b.symbol = w.symbol "
        "WHERE b.source_id = %s AND b.day BETWEEN %s AND %s AND b.symbol = ANY(%s::text[])"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [symbols, source_id, first, last, symbols])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros((0, 5))
    index, day, *values = (_binary_array(bytes(a)) for a in row)
    order = np.lexsort((day, index))
    return index[order].astype(np.int64) - 1, day[order].astype(np.int64), np.stack(values, axis=1)[order]


def _binary_array(data: bytes) -> np.ndarray:
    """A one-dimensional int4 or float8 array without nulls in PostgreSQL's binary format: five
    int4 (dimensions, null flag, element type, length, lower bound), then each element's length
    and value."""
    width = int.from_bytes(data[20:24], "big") if len(data) > 20 else 4
    element = np.dtype([("length", ">i4"), ("value", ">i4" if width == 4 else ">f8")])
    return np.frombuffer(data, dtype=element, offset=20)["value"]


_UPSERT = (
    "INSERT INTO {table} (source_id, symbol, day, open, high, low, close, volume) {rows} "
    "ON CONFLICT (source_id, symbol, day) DO UPDATE SET open = excluded.open, high = excluded.high, "
    "low = excluded.low, close = excluded.close, volume = excluded.volume"
)


def _upsert(source_id: int, batch: Sequence[tuple[str, Bars]]) -> int:
    """One ``INSERT … ON CONFLICT DO UPDATE`` of ``batch``'s bars, without a model instance per
    bar: on PostgreSQL the columns go as array literals (``unnest``: one statement, eight
    parameters), on SQLite as ``executemany`` rows."""
    table = StoredBar._meta.db_table
    symbols = [symbol for symbol, b in batch for _ in range(len(b))]
    dates = np.concatenate([b.dates for _, b in batch])
    values = [np.concatenate([getattr(b, f) for _, b in batch]) for f in _VALUES]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            rows = (
                "SELECT %s, * FROM unnest(%s::text[], %s::date[], %s::float8[], %s::float8[], %s::float8[],"
                " %s::float8[], %s::float8[])"
            )
            arrays = ["{" + ",".join(map(repr, v.tolist())) + "}" for v in values]
            days = "{" + ",".join(np.datetime_as_string(dates).tolist()) + "}"
            cursor.execute(_UPSERT.format(table=table, rows=rows), [source_id, symbols, days, *arrays])
        else:
            columns = (v.tolist() for v in values)
            cursor.executemany(
                _UPSERT.format(table=table, rows="VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"),
                list(zip(itertools.repeat(source_id), symbols, np.datetime_as_string(dates).tolist(), *columns)),
            )
    return len(symbols)
