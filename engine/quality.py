"""Vectorised data-quality checks on a :class:`~engine.panel.Panel`.

Suspect bars are reported, never edited or dropped. Every check is a whole-array NumPy
expression over the (S, T) panel; Python only loops over the hits to format them. Padding
columns (at or past a row's length) never produce a flag, and a bar's flags depend only on
bars inside the panel's window, so a window cut with ``Bars.window`` is judged on its own bars.

A row is **bad** (the scan skips it) when any open/high/low/close in its window is non-finite
or not positive, or any volume is non-finite or negative. Per-bar flags, ``"<code>:<YYYY-MM-DD>"``:

``ohlc_inconsistent``
    ``high < max(open, close)``, ``low > min(open, close)`` or ``high < low``.
``large_move``
    ``|close_t / close_{t-1} - 1| > 0.40`` (a genuine move or an unadjusted corporate action).
``missing_days``
    Only with a ``calendar``: a calendar date lies strictly between the bar and its
    predecessor in the row, i.e. market days are missing just before this bar (with the
    union of the source's dates as calendar: the predecessor is over one position earlier).
``one_bar_spike``
    A close that leaves both neighbours while they agree with each other. With
    ``dev = close_t / mean(close_{t-1}, close_{t+1}) - 1`` and
    ``agree = close_{t+1} / close_{t-1} - 1``, bar ``t`` is a spike when either tier holds:

    * volatility tier: ``|dev| >= max(SPIKE_FLOOR, SPIKE_SIGMAS * sigma, SPIKE_AGREE_RATIO * |agree|)``
      with ``sigma = 1.4826 * median(|log return|)`` over the ``SIGMA_RETURNS`` returns ending
      at bar ``t-1`` (a robust daily volatility that the spike itself cannot inflate). The tier
      needs all of those returns inside the window, so it is silent for the first
      ``SIGMA_RETURNS + 1`` bars of a window; that keeps flags identical however the history
      before them is cut.
    * absolute tier: ``|dev| >= max(SPIKE_BIG, SPIKE_BIG_AGREE_RATIO * |agree|)``, for prints
      too large to be noise even in a very volatile name, whatever the history.

    The rule needs the next bar, so a window's last bar is never a spike (no look-ahead);
    ``suspect_last_bar`` judges that bar instead.
    Calibration on the real 2013-2018 S&P 500 set: the 34 listed bad bars and spikes have
    ``|dev|`` >= 0.051, vol-tier z >= 5.2 and ``|dev| / |agree|`` >= 3.6 where ``|dev|`` < 0.12
    (the 2017-09-14 foreign bars), and ``|dev| / |agree|`` >= 2.0 where ``|dev|`` >= 0.12.
    Beyond those 34 the rule flags 49 of the 619,029 bars, 14 of them on 2014-10-30, which
    looks like a second day of foreign bars; the rest are mostly earnings-day round trips.
``suspect_last_bar``
    The window's last bar, judged with what is known on its day: its whole range lies at least
    ``LAST_BAR_GAP_SIGMAS`` robust daily volatilities (``sigma`` as above, over the
    ``SIGMA_RETURNS`` returns ending at the bar before) away from the previous close, a gap the
    bar never came back into, while its volume stays under ``LAST_BAR_VOLUME_RATIO`` times the
    median of the 20 bars before (a move that size without news-like volume: what a bar taken
    from another symbol looks like). Silent for windows under ``SIGMA_RETURNS + 2`` bars. Its
    recall and false positives on the real data are in docs/data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.panel import Panel

LARGE_MOVE = "large_move"
MISSING_DAYS = "missing_days"
OHLC_INCONSISTENT = "ohlc_inconsistent"
ONE_BAR_SPIKE = "one_bar_spike"
SUSPECT_LAST_BAR = "suspect_last_bar"
# Alphabetical, so sorting hits by code index sorts them by code.
FLAG_CODES: tuple[str, ...] = (LARGE_MOVE, MISSING_DAYS, OHLC_INCONSISTENT, ONE_BAR_SPIKE, SUSPECT_LAST_BAR)

LARGE_MOVE_THRESHOLD = 0.40
SIGMA_RETURNS = 60
MAD_TO_SIGMA = 1.4826  # median |x| -> standard deviation of a zero-mean normal law
SPIKE_FLOOR = 0.04
SPIKE_SIGMAS = 5.0
SPIKE_AGREE_RATIO = 3.0
SPIKE_BIG = 0.12
SPIKE_BIG_AGREE_RATIO = 1.5
LAST_BAR_GAP_SIGMAS = 4.0
LAST_BAR_VOLUME_RATIO = 2.5
LAST_BAR_VOLUME_BARS = 20

_PRICE_FIELDS = ("open", "high", "low", "close")
_Hits = tuple[np.ndarray, np.ndarray]  # (rows, columns) of flagged bars


@dataclass(frozen=True, eq=False)
class QualityReport:
    """Validation outcome for each row of a panel, in panel row order.

    ``flags[i]`` lists row ``i``'s suspect bars as ``"<code>:<YYYY-MM-DD>"``, sorted by date,
    then code. ``bad[i]`` is True when row ``i`` cannot be scanned at all; ``bad_detail[i]``
    then names the first offending field, value and date, otherwise it is None.
    """

    flags: list[list[str]]
    bad: np.ndarray
    bad_detail: list[str | None]


def validate_panel(panel: Panel, calendar: np.ndarray | None = None) -> QualityReport:
    """Flag suspect bars and unusable rows of ``panel``; the panel is not modified.

    ``calendar`` is the sorted ``datetime64[D]`` list of market dates (the union of all dates
    of the data source); without it the ``missing_days`` check is skipped. Raises
    ``ValueError`` if the calendar is empty or not strictly increasing.
    Pure and deterministic: the same panel always gives the same report.
    """
    s, t = panel.close.shape
    valid = np.arange(t)[None, :] < panel.lengths[:, None]
    hits = {
        LARGE_MOVE: _large_moves(panel, valid),
        OHLC_INCONSISTENT: _ohlc_inconsistent(panel, valid),
        ONE_BAR_SPIKE: _one_bar_spikes(panel, valid),
        SUSPECT_LAST_BAR: _suspect_last_bars(panel),
    }
    if calendar is not None:
        hits[MISSING_DAYS] = _missing_days(panel, valid, calendar)

    rows, cols, codes = [], [], []
    for code, (r, c) in hits.items():
        rows.append(r)
        cols.append(c)
        codes.append(np.full(r.shape, FLAG_CODES.index(code)))
    row, col, code_idx = (np.concatenate(a) for a in (rows, cols, codes))
    order = np.lexsort((code_idx, col, row))
    days = np.datetime_as_string(panel.dates[row[order], col[order]], unit="D")
    flags: list[list[str]] = [[] for _ in range(s)]
    for i, k, day in zip(row[order], code_idx[order], days, strict=True):
        flags[i].append(f"{FLAG_CODES[k]}:{day}")

    bad, bad_detail = _bad_rows(panel, valid)
    return QualityReport(flags=flags, bad=bad, bad_detail=bad_detail)


def _bad_rows(panel: Panel, valid: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Rows holding a value no indicator can use, and a one-line reason for each."""
    # NaN fails every comparison, so one range test per field catches NaN, inf and bad signs.
    usable = (panel.volume >= 0) & (panel.volume < np.inf)
    for name in _PRICE_FIELDS:
        values = getattr(panel, name)
        usable &= (values > 0) & (values < np.inf)
    bad_bar = valid & ~usable
    bad = np.asarray(bad_bar.any(axis=1))
    detail: list[str | None] = [None] * panel.n_symbols
    for i in np.flatnonzero(bad):
        cols = np.flatnonzero(bad_bar[i])
        col = int(cols[0])
        for name in (*_PRICE_FIELDS, "volume"):
            value = float(getattr(panel, name)[i, col])
            floor_ok = value >= 0 if name == "volume" else value > 0
            if not np.isfinite(value):
                kind = "non-finite"
            elif not floor_ok:
                kind = "negative" if name == "volume" else "non-positive"
            else:
                continue
            day = np.datetime_as_string(panel.dates[i, col], unit="D")
            more = cols.size - 1
            tail = f" (and {more} more bad bar{'s' if more > 1 else ''})" if more else ""
            detail[i] = f"{kind} {name} {value} on {day}{tail}"
            break
    return bad, detail


def _ohlc_inconsistent(panel: Panel, valid: np.ndarray) -> _Hits:
    o, h, lo, c = panel.open, panel.high, panel.low, panel.close
    r, k = np.nonzero(valid & ((h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (h < lo)))
    return r, k


def _large_moves(panel: Panel, valid: np.ndarray) -> _Hits:
    c = panel.close
    with np.errstate(divide="ignore", invalid="ignore"):
        r, k = np.nonzero(valid[:, 1:] & (np.abs(c[:, 1:] / c[:, :-1] - 1.0) > LARGE_MOVE_THRESHOLD))
    return r, k + 1


def _missing_days(panel: Panel, valid: np.ndarray, calendar: np.ndarray) -> _Hits:
    """Bars with a calendar date strictly between them and their predecessor in the row."""
    cal = np.asarray(calendar, dtype="datetime64[D]")
    if cal.ndim != 1 or cal.size == 0 or np.any(cal[1:] <= cal[:-1]):
        raise ValueError("calendar must be a non-empty, strictly increasing 1-D array of dates")
    dates = panel.dates
    # Only pairs more than one day apart can enclose a market day; searching just those
    # (weekends, holidays, gaps) is a fraction of the bars.
    r, k = np.nonzero(valid[:, 1:] & (dates[:, 1:] - dates[:, :-1] > np.timedelta64(1, "D")))
    after = np.searchsorted(cal, dates[r, k], side="right")  # first market day after the predecessor
    missing = cal[np.minimum(after, cal.size - 1)] < dates[r, k + 1]
    missing &= after < cal.size
    return r[missing], k[missing] + 1


def _one_bar_spikes(panel: Panel, valid: np.ndarray) -> _Hits:
    """Bars that are one-bar spikes per the module docstring.

    Both tiers need ``|dev| >= SPIKE_FLOOR``, so the rest of the rule, and the robust
    volatility above all, is evaluated only at the few bars that pass it.
    """
    c = panel.close
    if c.shape[1] < 3:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.abs(c[:, 1:-1] / (0.5 * (c[:, :-2] + c[:, 2:])) - 1.0)
    # valid[:, 2:] means bar t+1 exists, hence bars t-1 and t too; column k of dev is bar k+1.
    r, k = np.nonzero(valid[:, 2:] & (dev >= SPIKE_FLOOR))
    bar = k + 1
    d = dev[r, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        agree = np.abs(c[r, bar + 1] / c[r, bar - 1] - 1.0)
    hit = d >= np.maximum(SPIKE_BIG, SPIKE_BIG_AGREE_RATIO * agree)
    need = np.flatnonzero(~hit & (bar > SIGMA_RETURNS) & (d >= SPIKE_AGREE_RATIO * agree))
    if need.size:
        # Closes t-61 .. t-1 give the SIGMA_RETURNS returns that end at bar t-1.
        window = (bar[need] - SIGMA_RETURNS - 1)[:, None] + np.arange(SIGMA_RETURNS + 1)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            abs_ret = np.abs(np.diff(np.log(c[r[need, None], window]), axis=1))
        sigma = MAD_TO_SIGMA * np.median(abs_ret, axis=1)
        hit[need] = d[need] >= SPIKE_SIGMAS * sigma
    return r[hit], bar[hit]


def _suspect_last_bars(panel: Panel) -> _Hits:
    """Each row's last bar when it is suspect per the module docstring."""
    rows = np.flatnonzero(panel.lengths >= SIGMA_RETURNS + 2)
    last = panel.lengths[rows] - 1
    c = panel.close
    prev = c[rows, last - 1]
    # Closes t-61 .. t-1 give the SIGMA_RETURNS returns that end at bar t-1.
    window = (last - SIGMA_RETURNS - 1)[:, None] + np.arange(SIGMA_RETURNS + 1)[None, :]
    volumes = (last - LAST_BAR_VOLUME_BARS)[:, None] + np.arange(LAST_BAR_VOLUME_BARS)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = MAD_TO_SIGMA * np.median(np.abs(np.diff(np.log(c[rows[:, None], window]), axis=1)), axis=1)
        low, high = panel.low[rows, last], panel.high[rows, last]
        gap = np.where(low > prev, np.log(low / prev), np.where(high < prev, np.log(prev / high), 0.0))
        ratio = panel.volume[rows, last] / np.median(panel.volume[rows[:, None], volumes], axis=1)
        hit = (gap >= LAST_BAR_GAP_SIGMAS * sigma) & (gap > 0) & (ratio < LAST_BAR_VOLUME_RATIO)
    return rows[hit], last[hit]
