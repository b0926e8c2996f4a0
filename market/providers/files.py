"""Daily bars from Parquet or CSV files (the ``parquet`` and ``csv`` providers).

Bars: one file, or a folder of ``*.parquet`` / ``*.csv`` files (not recursive; in a CSV
folder the universe files ``universe.csv`` and ``constituents.csv`` are not bars), with
columns ``symbol, date, open, high, low, close, volume``; names are matched ignoring case and
surrounding spaces, extra columns are ignored. Dates are ``YYYY-MM-DD`` text, timestamps or
Parquet dates. Prices and volume are numbers; an empty value becomes NaN and is left for
validation to flag, never filled.

Universe: a CSV with ``symbol, name, sector`` (extra columns ignored). When no universe path
is given, ``universe.csv`` then ``constituents.csv`` is looked for in the data folder (or
next to the data file).

Everything is read once per provider, on first use, with PyArrow; problems raise
:class:`DataSourceError` naming the file and the problem.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from engine.types import Bars, Instrument
from market.providers.base import DataSourceError, calendar_range, check_lookback, window_copy

FileKind = Literal["parquet", "csv"]
BAR_COLUMNS: tuple[str, ...] = ("symbol", "date", "open", "high", "low", "close", "volume")
UNIVERSE_COLUMNS: tuple[str, ...] = ("symbol", "name", "sector")
UNIVERSE_FILENAMES: tuple[str, ...] = ("universe.csv", "constituents.csv")
_VALUES = ("open", "high", "low", "close", "volume")
# What PyArrow and the OS raise for unreadable, corrupt or malformed files.
_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError, UnicodeDecodeError)


@dataclass(frozen=True)
class _Store:
    """All bars, sorted by (symbol, date); symbol ``s`` owns rows ``spans[s]``."""

    spans: dict[str, tuple[int, int]]
    dates: np.ndarray  # datetime64[D]
    values: dict[str, np.ndarray]  # float64 per column of _VALUES
    calendar: np.ndarray


class FileProvider:
    """Bars and universe read from local files; ``kind`` is ``"parquet"`` or ``"csv"``."""

    synthetic = False

    def __init__(self, kind: FileKind, data_path: str | Path, universe_path: str | Path | None = None) -> None:
        if kind not in ("parquet", "csv"):
            raise ValueError(f"file provider kind must be 'parquet' or 'csv', got {kind!r}")
        self.name: str = kind
        self.kind: FileKind = kind
        self.data_path = Path(data_path)
        self.universe_path = Path(universe_path) if universe_path is not None else None
        self._store: _Store | None = None
        self._universe: list[Instrument] | None = None

    def instruments(self) -> list[Instrument]:
        if self._universe is None:
            self._universe = _read_universe(self._find_universe())
        return list(self._universe)

    def calendar(self) -> np.ndarray:
        return self._load().calendar

    def date_range(self) -> tuple[date, date]:
        return calendar_range(self._load().calendar)

    def bars(self, symbols: Sequence[str], as_of: date, lookback: int) -> dict[str, Bars]:
        check_lookback(lookback)
        store = self._load()
        out: dict[str, Bars] = {}
        for symbol in dict.fromkeys(symbols):
            span = store.spans.get(symbol)
            if span is None:
                continue
            rows = slice(*span)
            full = Bars(store.dates[rows], *(store.values[c][rows] for c in _VALUES))
            win = window_copy(full, as_of, lookback)
            if win is not None:
                out[symbol] = win
        return out

    def _load(self) -> _Store:
        if self._store is None:
            self._store = _build_store(self.data_path, [_read_bars(f, self.kind) for f in self._data_files()])
        return self._store

    def _data_files(self) -> list[Path]:
        path = self.data_path
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise DataSourceError(f"data path {path} does not exist (set TECHNIC_DATA_PATH or --data)")
        files = sorted(p for p in path.glob(f"*.{self.kind}") if p.is_file())
        if self.kind == "csv":
            skip = {self.universe_path.resolve()} if self.universe_path is not None else set()
            files = [p for p in files if p.name.lower() not in UNIVERSE_FILENAMES and p.resolve() not in skip]
        if not files:
            raise DataSourceError(f"no *.{self.kind} bar files in folder {path}")
        return files

    def _find_universe(self) -> Path:
        if self.universe_path is not None:
            if not self.universe_path.is_file():
                raise DataSourceError(f"universe file {self.universe_path} does not exist")
            return self.universe_path
        folder = self.data_path if self.data_path.is_dir() else self.data_path.parent
        for filename in UNIVERSE_FILENAMES:
            if (folder / filename).is_file():
                return folder / filename
        raise DataSourceError(
            f"no universe.csv or constituents.csv in {folder}; pass a symbol,name,sector CSV with "
            "TECHNIC_UNIVERSE_PATH or --universe-file"
        )


@dataclass(frozen=True)
class _Part:
    """One file's bars as arrays; ``codes`` index ``names`` (sorted, unique, stripped)."""

    names: np.ndarray
    codes: np.ndarray
    days: np.ndarray  # int64 days since 1970-01-01
    values: dict[str, np.ndarray]


def _column_map(header: Sequence[str], wanted: Sequence[str], path: Path) -> dict[str, str]:
    """Map each wanted (lower-case) column to its name in ``header``; raise naming any missing."""
    found: dict[str, str] = {}
    for name in header:
        found.setdefault(name.strip().lower(), name)
    missing = [c for c in wanted if c not in found]
    if missing:
        raise DataSourceError(f"{path} is missing column(s) {', '.join(missing)} (needs {','.join(wanted)})")
    return {c: found[c] for c in wanted}


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except _READ_ERRORS as err:
        raise DataSourceError(f"cannot read {path}: {err}") from err
    if not header:
        raise DataSourceError(f"{path} is empty (expected a header row)")
    return header


def _read_csv(path: Path, wanted: Sequence[str]) -> pa.Table:
    """The wanted columns of a CSV, all as text, renamed to their lower-case names."""
    header = _csv_header(path)
    columns = _column_map(header, wanted, path)
    read = pv.ReadOptions(column_names=header, skip_rows=1)
    convert = pv.ConvertOptions(
        include_columns=[columns[c] for c in wanted],
        column_types={columns[c]: pa.string() for c in wanted},
        null_values=[""],
        strings_can_be_null=True,
    )
    try:
        table = pv.read_csv(path, read_options=read, convert_options=convert)
    except _READ_ERRORS as err:
        raise DataSourceError(f"cannot parse {path}: {str(err).splitlines()[0]}") from err
    return table.rename_columns(list(wanted))


def _read_bars(path: Path, kind: FileKind) -> _Part:
    if kind == "csv":
        table = _read_csv(path, BAR_COLUMNS)
    else:
        try:
            columns = _column_map(pq.read_schema(path).names, BAR_COLUMNS, path)
            table = pq.read_table(path, columns=[columns[c] for c in BAR_COLUMNS])
        except _READ_ERRORS as err:
            raise DataSourceError(f"cannot read {path} as Parquet: {str(err).splitlines()[0]}") from err
        table = table.rename_columns(list(BAR_COLUMNS))
    names, codes = _symbol_codes(table.column("symbol"), path)
    values = {c: _to_float(table.column(c), c, path) for c in _VALUES}
    return _Part(names, codes, _to_days(table.column("date"), path), values)


def _symbol_codes(column: pa.ChunkedArray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique stripped symbols and each row's index into them, without per-row Python."""
    if column.null_count:
        raise DataSourceError(f"{path}: column 'symbol' has an empty value")
    pieces = []
    for chunk in column.chunks:
        encoded = chunk if pa.types.is_dictionary(chunk.type) else pc.dictionary_encode(chunk)
        local = np.array([str(s).strip() for s in encoded.dictionary.to_pylist()], dtype=str)
        pieces.append((local, encoded.indices.to_numpy(zero_copy_only=False)))
    names = np.unique(np.concatenate([p[0] for p in pieces])) if pieces else np.array([], dtype=str)
    if names.size and names[0] == "":
        raise DataSourceError(f"{path}: column 'symbol' has an empty value")
    codes = [np.searchsorted(names, local)[idx] for local, idx in pieces]
    return names, np.concatenate(codes) if codes else np.array([], dtype=np.int64)


def _to_days(column: pa.ChunkedArray, path: Path) -> np.ndarray:
    if column.null_count:
        raise DataSourceError(f"{path}: column 'date' has an empty value")
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            dates = pc.cast(column, pa.date32())
        except pa.ArrowInvalid as err:
            try:
                dates = pc.cast(pc.cast(column, pa.timestamp("s")), pa.date32())
            except pa.ArrowInvalid:
                raise DataSourceError(f"{path}: column 'date' has a value that is not a date: {err}") from err
    elif pa.types.is_temporal(kind) and not pa.types.is_time(kind) and not pa.types.is_duration(kind):
        dates = pc.cast(column, pa.date32())
    else:
        raise DataSourceError(f"{path}: column 'date' holds {kind}, not dates")
    return pc.cast(dates, pa.int32()).to_numpy().astype(np.int64)


def _to_float(column: pa.ChunkedArray, name: str, path: Path) -> np.ndarray:
    kind = column.type
    if not (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    ):
        raise DataSourceError(f"{path}: column '{name}' holds {kind}, not numbers")
    try:
        numbers = pc.cast(column, pa.float64())
    except pa.ArrowInvalid as err:
        raise DataSourceError(f"{path}: column '{name}' has a value that is not a number: {err}") from err
    return numbers.to_numpy().astype(np.float64, copy=False)


def _build_store(source: Path, parts: list[_Part]) -> _Store:
    """Merge per-file parts, sort by (symbol, date), reject duplicates and split by symbol."""
    names = np.unique(np.concatenate([p.names for p in parts]))
    codes = np.concatenate([np.searchsorted(names, p.names)[p.codes] for p in parts]).astype(np.int64)
    days = np.concatenate([p.days for p in parts])
    values = {c: np.concatenate([p.values[c] for p in parts]) for c in _VALUES}
    if codes.size == 0:
        raise DataSourceError(f"{source} holds no bars")
    key = (codes << 32) | (days + 2**31)
    if np.any(key[1:] < key[:-1]):
        order = np.argsort(key, kind="stable")
        key, codes, days = key[order], codes[order], days[order]
        values = {c: v[order] for c, v in values.items()}
    repeated = np.flatnonzero(key[1:] == key[:-1])
    if repeated.size:
        i = int(repeated[0])
        raise DataSourceError(f"{source}: duplicate bar for {names[codes[i]]} on {np.datetime64(int(days[i]), 'D')}")
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], codes.size]
    spans = {str(names[codes[a]]): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}
    dates = days.astype("datetime64[D]")
    calendar = np.unique(dates)
    for arr in (dates, calendar, *values.values()):
        arr.flags.writeable = False
    return _Store(spans, dates, values, calendar)


def _read_universe(path: Path) -> list[Instrument]:
    """The universe CSV as instruments sorted by symbol; raises on blank or repeated symbols."""
    table = _read_csv(path, UNIVERSE_COLUMNS)
    symbols, names, sectors = (pc.utf8_trim_whitespace(table.column(c)).to_pylist() for c in UNIVERSE_COLUMNS)
    seen: set[str] = set()
    out: list[Instrument] = []
    for row, (symbol, name, sector) in enumerate(zip(symbols, names, sectors, strict=True), start=2):
        if not symbol:
            raise DataSourceError(f"{path}: line {row} has no symbol")
        if symbol in seen:
            raise DataSourceError(f"{path}: symbol {symbol} is listed more than once")
        seen.add(symbol)
        out.append(Instrument(symbol, name or "", sector or ""))
    return sorted(out, key=lambda inst: inst.symbol)
