"""What a screen costs: a filtered scan against the same scan unfiltered, and parsing a long filter.

* real: the 505 real S&P 500 symbols with their full 1,259-bar histories;
* synthetic: 5,000 demo symbols with 1,259-bar windows, all held in memory.

Only ``scan_batch`` is timed, with the bars already in memory, once without a screen ("plain")
and once with ``FILTER`` ("filtered": ten clauses, three history functions and ``weekly(...)``;
about a quarter of the real symbols match). The machine is shared and noisy, so the two are
measured as a ratio within one run: ROUNDS rounds, each running plain, filtered and the two
floor parts below once, in an order that rotates from round to round; each figure is the median
of its rounds. ``*_filter_overhead_pct`` is filtered / plain - 1 of those medians, and
``*_paired_overhead_pct`` the median of the rounds' own ratios (a check on the first).
``*_minor_faults`` are a scan's median minor page faults (memory the allocator gave back to
the system and faults in again): their count changes from one process to the next, and with it
the scan's time (docs/benchmarks.md).

The floor (measured in the same rounds): the filter evaluated alone (``evaluate_chunk``) over
each chunk's panel, indicators and scores built beforehand, as ``scan_batch`` evaluates it, with
a fresh ``Source`` each time (it caches series and the weekly panel); and, of that, building the
chunks' weekly bars alone (``WeeklyPanel``: the weeks and the weekly closes the filter reads).
With the evaluator as it is, no scan with this filter takes less than the plain scan plus that
evaluation, less the rows it does not build for the symbols that do not match.

Parsing: a filter of about 2,000 characters (the limit) made of varied clauses, parsed and
checked by ``engine.screens.language._parse`` without its cache, against its floor: the lark
parse alone, with the tree's nodes built as the grammar builds them and with lark's own tree.
Medians of PARSE_ROUNDS rounds, interleaved the same way.

Targets: the filtered scan <= 10 % more engine time than the plain one (real and synthetic);
parse and check of the 2,000-character filter <= 5 ms. Each part runs in its own process.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import market_dir, report, single_core

LOOKBACK = 1259
SYNTHETIC_SYMBOLS = 5000
GENERATE_CHUNK = 500
ROUNDS_REAL = 21
ROUNDS_SYNTHETIC = 7
PARSE_ROUNDS = 300
OVERHEAD_TARGET_PCT = 10.0
PARSE_TARGET_MS = 5.0

FILTER = (
    "close > sma_50 and sma_50 > sma_200 and rsi_14 > 35 and rsi_14 < 75 and volume_ratio > 0.5"
    " and adx_14 > 10 and highest(high, 20) < close * 1.15 and average(volume, 50) > 100000"
    " and change(close, 21) > -0.2 and weekly(close) > weekly(sma_20)"
)

# The clauses of the long filter (long_filter), all of the language's functions among them.
PARSE_CLAUSES = (
    "close > sma_50",
    "sma_50 > sma_200 * 1.01",
    "rsi_14 >= 30 and rsi_14 <= 70",
    "(macd > macd_signal or macd_hist > 0)",
    "highest(high, 20) < close * 1.15",
    "lowest(low, 10) > 0.9 * close",
    "average(volume, 50) > 1e5",
    "change(close, 21) > -0.2",
    "weekly(close) > weekly(sma_20)",
    "not gap_down",
    "count(close > open, 10) >= 4",
    "(crossed_above(close, sma_20, 5) or breakout_20d)",
    "abs(ret_1d) < 0.08",
    "min(ema_12, ema_26) > bb_lower",
    "max(atr_14 / close, vol_20d / 16) < 0.06",
    "ago(close, 5) < close + 2 * atr_14",
    "tech_rating - momentum_score / 2 > -10",
    "pct_from_52w_high > -0.35",
    "volume_ratio > .5",
    "adx_14 > 10",
    "(dollar_volume_20 > 2000000) == true",
    "weekly(rsi_14) < 80",
    "-ret_5d < 0.1",
    "not (nr7 and inside_day)",
)


def long_filter(limit: int = 2000) -> str:
    """PARSE_CLAUSES in turn, joined by ``and``, as many as fit in ``limit`` characters (once one
    does not fit, the shorter ones after it that still do)."""
    parts: list[str] = []
    length, grew = 0, True
    while grew:
        grew = False
        for clause in PARSE_CLAUSES:
            added = len(clause) + (len(" and ") if parts else 0)
            if length + added <= limit:
                parts.append(clause)
                length, grew = length + added, True
    return " and ".join(parts)


def _rounds(jobs: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Seconds and minor page faults of each job in each round; the jobs' order rotates by one
    place a round. Each job runs once untimed first."""
    for job in jobs.values():
        job()
    names = list(jobs)
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            jobs[name]()
            times[name].append(time.perf_counter() - t0)
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return times, faults


def _scan_figures(
    prefix: str, instruments: Sequence[Any], bars: Any, as_of: Any, calendar: Any, rounds: int
) -> dict[str, Any]:
    from engine.config import ScanConfig
    from engine.indicators import MIN_HISTORY, compute_indicators
    from engine.panel import build_panel
    from engine.scan import CHUNK_SIZE, _alphas, _source, scan_batch
    from engine.scoring import score
    from engine.screens.screen import evaluate_chunk
    from engine.screens.series import WeeklyPanel

    plain = ScanConfig(lookback_days=LOOKBACK)
    filtered = ScanConfig(lookback_days=LOOKBACK, filter=FILTER)
    screen = filtered.screen
    assert screen is not None
    # What scan_batch evaluates the filter over, chunk by chunk, built beforehand.
    eligible = [(i, bars[i.symbol]) for i in instruments if i.symbol in bars and len(bars[i.symbol]) >= MIN_HISTORY]
    prebuilt = []
    for start in range(0, len(eligible), CHUNK_SIZE):
        chunk = eligible[start : start + CHUNK_SIZE]
        panel = build_panel([b for _, b in chunk])
        ind = compute_indicators(panel)
        prebuilt.append((panel, ind, score(ind), _alphas(None, panel, [i.sector for i, _ in chunk])))

    def evaluate_only() -> None:
        for panel, ind, scores, alphas in prebuilt:
            evaluate_chunk(screen, _source(panel, ind, scores, alphas, None))

    def weekly_only() -> None:
        for panel, *_ in prebuilt:
            _ = WeeklyPanel(panel).close

    times, faults = _rounds(
        {
            "plain": lambda: scan_batch(instruments, bars, plain, as_of, calendar),
            "filtered": lambda: scan_batch(instruments, bars, filtered, as_of, calendar),
            "evaluate": evaluate_only,
            "weekly": weekly_only,
        },
        rounds,
    )
    med = {name: statistics.median(t) for name, t in times.items()}
    paired = statistics.median(f / p for f, p in zip(times["filtered"], times["plain"], strict=True))
    plain_rows = len(scan_batch(instruments, bars, plain, as_of, calendar).rows)
    out = scan_batch(instruments, bars, filtered, as_of, calendar)
    not_matched = sum(s.reason == "not_matched" for s in out.skipped)

    def pct(seconds: float) -> float:
        return round(100.0 * seconds / med["plain"], 1)

    return {
        f"{prefix}_symbols": len(instruments),
        f"{prefix}_rounds": rounds,
        f"{prefix}_plain_rows": plain_rows,
        f"{prefix}_matched_rows": len(out.rows),
        f"{prefix}_not_matched": not_matched,
        f"{prefix}_plain_seconds": round(med["plain"], 4),
        f"{prefix}_filtered_seconds": round(med["filtered"], 4),
        f"{prefix}_filter_overhead_pct": round(100.0 * (med["filtered"] / med["plain"] - 1.0), 1),
        f"{prefix}_paired_overhead_pct": round(100.0 * (paired - 1.0), 1),
        f"{prefix}_plain_minor_faults": round(statistics.median(faults["plain"])),
        f"{prefix}_filtered_minor_faults": round(statistics.median(faults["filtered"])),
        f"{prefix}_floor_evaluate_seconds": round(med["evaluate"], 4),
        f"{prefix}_floor_evaluate_pct": pct(med["evaluate"]),
        f"{prefix}_floor_weekly_panel_seconds": round(med["weekly"], 4),
        f"{prefix}_floor_weekly_panel_pct": pct(med["weekly"]),
    }


def _real() -> dict[str, Any]:
    single_core()
    from market.providers.files import FileProvider

    folder = market_dir()
    provider = FileProvider("parquet", folder / "prices.parquet", folder / "constituents.csv")
    instruments = provider.instruments()
    as_of = provider.date_range()[1]
    bars = provider.bars([i.symbol for i in instruments], as_of, LOOKBACK)
    return _scan_figures("real", instruments, bars, as_of, provider.calendar(), ROUNDS_REAL)


def _synthetic() -> dict[str, Any]:
    single_core()
    from market.providers.demo import DemoProvider

    provider = DemoProvider(n_symbols=SYNTHETIC_SYMBOLS)
    instruments = provider.instruments()
    as_of = provider.date_range()[1]
    bars = {}
    for start in range(0, len(instruments), GENERATE_CHUNK):
        bars.update(provider.bars([i.symbol for i in instruments[start : start + GENERATE_CHUNK]], as_of, LOOKBACK))
    return _scan_figures("synthetic", instruments, bars, as_of, provider.calendar(), ROUNDS_SYNTHETIC)


def _parse() -> dict[str, Any]:
    single_core()
    from lark import Lark

    from engine.screens import language

    text = long_filter()
    check = language._parse.__wrapped__  # without the lru_cache
    # lark alone: the same grammar and lexer, lark's own tree instead of the nodes
    bare = Lark(language.GRAMMAR, parser="lalr", lexer=language._PARSER.options.lexer, maybe_placeholders=False)
    expression = check(text, "filter", "boolean")
    times, _ = _rounds(
        {
            "check": lambda: check(text, "filter", "boolean"),
            "nodes": lambda: language._PARSER.parse(text),
            "bare": lambda: bare.parse(text),
        },
        PARSE_ROUNDS,
    )
    ms = {name: round(1000.0 * statistics.median(t), 3) for name, t in times.items()}
    return {
        "parse_chars": len(text),
        "parse_clauses": len(expression.clauses),
        "parse_rounds": PARSE_ROUNDS,
        "parse_check_ms": ms["check"],
        "parse_floor_lark_with_nodes_ms": ms["nodes"],
        "parse_floor_lark_bare_ms": ms["bare"],
    }


def _in_child(func: Any) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func)


def _verdicts(figures: dict[str, Any]) -> dict[str, str]:
    out = {}
    for prefix in ("real", "synthetic"):
        overhead = figures[f"{prefix}_filter_overhead_pct"]
        out[f"{prefix}_filter_overhead_pct"] = "PASS" if overhead <= OVERHEAD_TARGET_PCT else "MISS"
    out["parse_check_ms"] = "PASS" if figures["parse_check_ms"] <= PARSE_TARGET_MS else "MISS"
    return out


def main() -> None:
    figures = {**_in_child(_real), **_in_child(_synthetic), **_in_child(_parse)}
    figures["targets"] = {
        "real_filter_overhead_pct": f"<= {OVERHEAD_TARGET_PCT:g}",
        "synthetic_filter_overhead_pct": f"<= {OVERHEAD_TARGET_PCT:g}",
        "parse_check_ms": f"<= {PARSE_TARGET_MS:g}",
    }
    figures["verdicts"] = _verdicts(figures)
    for key, value in figures.items():
        print(f"{key:>34}: {value}")
    for key, verdict in figures["verdicts"].items():
        line = f"{verdict} {key} = {figures[key]} (target {figures['targets'][key]})"
        if verdict == "MISS" and key.endswith("_overhead_pct"):
            prefix = key.split("_", 1)[0]
            line += (
                f"; floor: evaluating the filter alone costs {figures[f'{prefix}_floor_evaluate_pct']} % of the"
                f" plain scan, {figures[f'{prefix}_floor_weekly_panel_pct']} % of it building weekly panels"
            )
        elif verdict == "MISS":
            line += (
                f"; floor: the lark parse alone takes {figures['parse_floor_lark_with_nodes_ms']} ms with the"
                f" tree's nodes, {figures['parse_floor_lark_bare_ms']} ms with lark's own tree"
            )
        print(line)
    report("screens", figures)


if __name__ == "__main__":
    main()
