"""A deterministic synthetic market, generated in-process (the ``demo`` provider).

Business days (Monday to Friday, no holidays) from 2018-01-02 to 2024-12-31, 1,826 bars.
Symbols are spread over the 11 GICS sectors with S&P 500-like weights; tickers are random
3-4 letter strings of consonants and every name starts with "Synthetic", so the data can never be
mistaken for a real company's.

Model, per symbol ``i`` in sector ``k`` (daily log returns):

* a market factor ``m`` and, per sector, ``f_k = beta_k * m + e_k``; both ``m`` and ``e_k``
  have stochastic volatility, so sectors co-move with the market and more within themselves;
* ``r_i = mu_i + b_i * f_k + sigma_i,t * z_i,t + jumps``, with ``log sigma_i,t`` an AR(1)
  (volatility clustering), ``z`` Student-t with 4 degrees of freedom (fat tails), a base
  volatility depending on the sector (utilities calm, energy and IT volatile) and rare jumps
  that land overnight, like earnings gaps;
* open = previous close times an overnight gap that carries part of the day's move; high and
  low extend beyond open and close by amounts scaled to the day's volatility;
* volume is lognormal around a per-symbol dollar volume ($0.5M to billions a day), persistent
  (AR(1)) and higher on big-move days.

Generation is lazy and per symbol: only the market and sector paths are built at
construction. A symbol's bars come from its own random stream ``[seed, 0, index]``, so they
are bit-identical whichever other symbols are requested with it, and a provider of 5,000
symbols costs no more than one of 500 until bars are asked for.

Injected defects (:data:`DEMO_DEFECTS`), so data-quality checks have something to find;
``bar`` indexes the full calendar, and a defect applies when its symbol index exists:

* symbol index 3, ``one_bar_spike``: the whole bar ``T-40`` is 30% above the path, and the
  next bar returns to it;
* symbol index 5, ``low_above_open``: at bar ``T-25`` the open is 3% below the low;
* symbol index 8, ``missing_days``: bars ``T-70`` to ``T-66`` (five market days) are absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy.signal import lfilter

from engine.types import GICS_SECTORS, Bars, Instrument
from market.providers.base import calendar_range, check_lookback, window_copy

FIRST_DATE = date(2018, 1, 2)
LAST_DATE = date(2024, 12, 31)
_CHUNK = 128  # symbols generated together; bounds peak memory to about 50 MB
_TRADING_DAYS = 252


@dataclass(frozen=True)
class _Sector:
    weight: float  # share of the universe
    beta: float  # sector factor's loading on the market
    factor_vol: float  # annualised volatility of the sector's own factor
    idio_vol: float  # typical annualised idiosyncratic volatility of its stocks


_SECTORS: dict[str, _Sector] = {
    "Consumer Discretionary": _Sector(0.17, 1.10, 0.08, 0.30),
    "Consumer Staples": _Sector(0.07, 0.60, 0.07, 0.18),
    "Energy": _Sector(0.06, 1.10, 0.18, 0.34),
    "Financials": _Sector(0.13, 1.15, 0.10, 0.24),
    "Health Care": _Sector(0.12, 0.85, 0.08, 0.28),
    "Industrials": _Sector(0.13, 1.05, 0.07, 0.24),
    "Information Technology": _Sector(0.14, 1.20, 0.10, 0.33),
    "Materials": _Sector(0.05, 1.00, 0.10, 0.27),
    "Real Estate": _Sector(0.06, 0.80, 0.10, 0.20),
    "Telecommunication Services": _Sector(0.01, 0.70, 0.08, 0.20),
    "Utilities": _Sector(0.05, 0.45, 0.08, 0.15),
}
assert tuple(sorted(_SECTORS)) == GICS_SECTORS


@dataclass(frozen=True)
class InjectedDefect:
    """A deliberate data defect in one demo symbol (see the module docstring)."""

    index: int  # symbol index in generation order (DemoProvider.symbol_at)
    kind: str  # "one_bar_spike", "low_above_open" or "missing_days"
    bar: int  # first affected bar, counted from the end of the calendar when negative
    length: int  # number of bars affected


DEMO_DEFECTS: tuple[InjectedDefect, ...] = (
    InjectedDefect(3, "one_bar_spike", -40, 1),
    InjectedDefect(5, "low_above_open", -25, 1),
    InjectedDefect(8, "missing_days", -70, 5),
)


def _business_days(first: date, last: date) -> np.ndarray:
    days = np.arange(np.datetime64(first, "D"), np.datetime64(last, "D") + 1)
    return days[np.is_busday(days)]


def _sector_counts(n: int) -> np.ndarray:
    """Symbols per sector (largest remainder), at least 3 per sector once n allows it."""
    weights = np.array([_SECTORS[s].weight for s in GICS_SECTORS])
    floor = min(3, n // len(GICS_SECTORS))
    share = weights / weights.sum() * (n - floor * len(GICS_SECTORS))
    counts = np.floor(share).astype(int) + floor
    rest = n - counts.sum()
    counts[np.argsort(-(share - np.floor(share)), kind="stable")[:rest]] += 1
    return counts


def _tickers(n: int, rng: np.random.Generator) -> list[str]:
    # Consonants only: random tickers can then never spell a word an analyst would trip over.
    letters = np.array(list("BCDFGHJKLMNPQRSTVWXZ"))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        codes = rng.integers(0, len(letters), size=(2 * n, 4))
        lengths = rng.integers(3, 5, size=2 * n)
        for row, length in zip(codes, lengths, strict=True):
            ticker = "".join(letters[row[:length]])
            if ticker not in seen:
                seen.add(ticker)
                out.append(ticker)
    return out[:n]


def _log_vol(eta: np.ndarray, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) log-volatility with unconditional sd ``sd``, one path per row.

    Shifted by ``-sd**2`` so that ``exp(h)**2`` averages 1 and the base volatility keeps
    its meaning.
    """
    shocks = eta * (sd * np.sqrt(1.0 - phi * phi))
    shocks[..., 0] = eta[..., 0] * sd  # start in the stationary distribution
    return lfilter([1.0], [1.0, -phi], shocks, axis=-1) - sd * sd


class DemoProvider:
    """Synthetic market of ``n_symbols`` symbols; the same ``seed`` gives the same market."""

    name = "demo"
    synthetic = True

    def __init__(self, n_symbols: int = 500, seed: int = 7) -> None:
        if n_symbols < len(GICS_SECTORS):
            raise ValueError(f"the demo market needs at least {len(GICS_SECTORS)} symbols, one per sector")
        self.n_symbols = n_symbols
        self.seed = seed
        self._calendar = _business_days(FIRST_DATE, LAST_DATE)
        self._calendar.flags.writeable = False
        counts = _sector_counts(n_symbols)
        self._sector_of = np.random.default_rng([seed, 1, 0]).permutation(
            np.repeat(np.arange(len(GICS_SECTORS)), counts)
        )
        self._symbols = _tickers(n_symbols, np.random.default_rng([seed, 1, 1]))
        self._index = {s: i for i, s in enumerate(self._symbols)}
        numbers = np.zeros(len(GICS_SECTORS), dtype=int)
        self._instruments: list[Instrument] = []
        for symbol, k in zip(self._symbols, self._sector_of, strict=True):
            numbers[k] += 1
            sector = GICS_SECTORS[k]
            self._instruments.append(Instrument(symbol, f"Synthetic {sector} Co {numbers[k]:02d}", sector))
        self._instruments.sort(key=lambda inst: inst.symbol)
        self._factor, self._factor_sd = self._factors(np.random.default_rng([seed, 2, 0]))

    def _factors(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sector factor returns and their conditional sd, both ``(11, T)``."""
        t = len(self._calendar)
        market_sd = 0.16 / np.sqrt(_TRADING_DAYS) * np.exp(_log_vol(rng.standard_normal(t), 0.985, 0.50))
        market = 0.07 / _TRADING_DAYS + market_sd * rng.standard_t(5, t) / np.sqrt(5 / 3)
        spec = [_SECTORS[s] for s in GICS_SECTORS]
        own_vol = np.array([s.factor_vol for s in spec])[:, None] / np.sqrt(_TRADING_DAYS)
        own_sd = own_vol * np.exp(_log_vol(rng.standard_normal((len(spec), t)), 0.97, 0.35))
        beta = np.array([s.beta for s in spec])[:, None]
        factor = beta * market + own_sd * rng.standard_t(5, own_sd.shape) / np.sqrt(5 / 3)
        return factor, np.sqrt((beta * market_sd) ** 2 + own_sd**2)

    def symbol_at(self, index: int) -> str:
        """The ticker generated at ``index`` (what :data:`DEMO_DEFECTS` refers to)."""
        return self._symbols[index]

    def defects(self) -> dict[str, InjectedDefect]:
        """The injected defects present in this market, by symbol."""
        return {self._symbols[d.index]: d for d in DEMO_DEFECTS if d.index < self.n_symbols}

    def instruments(self) -> list[Instrument]:
        return list(self._instruments)

    def calendar(self) -> np.ndarray:
        return self._calendar

    def date_range(self) -> tuple[date, date]:
        return calendar_range(self._calendar)

    def bars(self, symbols: Sequence[str], as_of: date, lookback: int) -> dict[str, Bars]:
        check_lookback(lookback)
        wanted = [s for s in dict.fromkeys(symbols) if s in self._index]
        out: dict[str, Bars] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            for symbol, full in zip(chunk, self._generate([self._index[s] for s in chunk]), strict=True):
                win = window_copy(full, as_of, lookback)
                if win is not None:
                    out[symbol] = win
        return out

    def _generate(self, indices: list[int]) -> list[Bars]:
        """Full-history bars of the symbols at ``indices``; row ``j`` depends only on ``indices[j]``."""
        n, t = len(indices), len(self._calendar)
        params = np.empty((n, 5))
        draws = np.empty((8, n, t))
        for j, i in enumerate(indices):
            rng = np.random.default_rng([self.seed, 0, i])
            params[j] = np.clip(rng.standard_normal(5), -2.5, 2.5)
            draws[0, j] = rng.standard_t(4, t) / np.sqrt(2.0)
            draws[1:7, j] = rng.standard_normal((6, t))
            draws[7, j] = rng.random(t)
        z, eta, gap_noise, jump, vol_noise, up, down, jump_u = draws
        sector = self._sector_of[indices]
        spec = [_SECTORS[GICS_SECTORS[k]] for k in sector]
        idio_vol = np.array([s.idio_vol for s in spec])[:, None] / np.sqrt(_TRADING_DAYS)
        base_vol = idio_vol * np.exp(0.2 * params[:, 1:2])
        beta = np.clip(1.0 + 0.25 * params[:, 2:3], 0.3, 1.8)
        mu = (0.08 + 0.06 * params[:, 0:1]) / _TRADING_DAYS

        sigma = base_vol * np.exp(_log_vol(eta, 0.98, 0.50))
        common = beta * self._factor[sector]
        day_sd = np.sqrt(sigma**2 + (beta * self._factor_sd[sector]) ** 2)
        jumps = np.where(jump_u < 2.0 / _TRADING_DAYS, 0.07 * jump, 0.0)
        move = common + sigma * z
        ret = mu - 0.5 * day_sd**2 + move + jumps
        overnight = 0.3 * move + jumps + 0.3 * sigma * gap_noise

        level = np.log(np.clip(55.0 * np.exp(0.7 * params[:, 3:4]), 4.0, 400.0))
        path = np.cumsum(ret, axis=1)
        anchor = 2 * t // 3
        log_close = level + path - path[:, anchor : anchor + 1]
        log_open = log_close - ret + overnight
        close, open_ = np.exp(log_close), np.exp(log_open)
        # high/low reach past the body by a share of the day's volatility
        high = np.maximum(open_, close) * np.exp(0.5 * day_sd * np.abs(up))
        low = np.minimum(open_, close) * np.exp(-0.5 * day_sd * np.abs(down))

        dollar = np.exp(np.log(3e7) + 1.4 * params[:, 4:5])
        persist = lfilter([0.3], [1.0, -0.7], vol_noise, axis=1)
        surprise = np.minimum(np.abs(move + jumps) / day_sd, 6.0)
        log_volume = np.log(dollar) - 0.5 * (level + log_close) + persist + 0.35 * surprise - 0.3
        volume = np.maximum(np.round(np.exp(log_volume)), 100.0)

        out = [Bars(self._calendar, open_[j], high[j], low[j], close[j], volume[j]) for j in range(n)]
        for j, i in enumerate(indices):
            for defect in DEMO_DEFECTS:
                if defect.index == i:
                    out[j] = _inject(out[j], defect)
        return out


def _inject(bars: Bars, defect: InjectedDefect) -> Bars:
    dates, o, h, lo, c, v = (a.copy() for a in (bars.dates, bars.open, bars.high, bars.low, bars.close, bars.volume))
    b = defect.bar % len(dates)
    if defect.kind == "one_bar_spike":
        for arr in (o, h, lo, c):
            arr[b] *= 1.3
    elif defect.kind == "low_above_open":
        o[b] = lo[b] * 0.97
    elif defect.kind == "missing_days":
        keep = np.ones(len(dates), dtype=bool)
        keep[b : b + defect.length] = False
        dates, o, h, lo, c, v = (a[keep] for a in (dates, o, h, lo, c, v))
    else:
        raise ValueError(f"unknown defect kind {defect.kind!r}")
    return Bars(dates, o, h, lo, c, v)
