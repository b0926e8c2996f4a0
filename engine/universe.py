"""Choosing the symbols of a scan from a universe."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from engine.config import ConfigError, ScanConfig
from engine.types import Instrument


def select_universe(instruments: Sequence[Instrument], config: ScanConfig) -> list[Instrument]:
    """The instruments a scan covers, in a deterministic order.

    Explicit ``symbols`` are taken in the order given; otherwise the universe filtered by
    ``sectors``. ``max_symbols`` then keeps a sector-stratified sample: each sector's symbols
    in alphabetical order, taken round-robin across sectors, so a small scan still spans every
    chosen sector.

    Raises ConfigError for an unknown sector or symbol (with the nearest valid names).
    """
    by_symbol = {i.symbol: i for i in instruments}
    sectors = sorted({i.sector for i in instruments})
    for sector in config.sectors:
        if sector not in sectors:
            raise ConfigError(
                "sectors", f"unknown sector {sector!r}", difflib.get_close_matches(sector, sectors, n=3, cutoff=0.4)
            )
    if config.symbols:
        unknown = [s for s in config.symbols if s not in by_symbol]
        if unknown:
            suggestions = difflib.get_close_matches(unknown[0], list(by_symbol), n=3, cutoff=0.6)
            raise ConfigError(
                "symbols", f"unknown symbol{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}", suggestions
            )
        chosen = [by_symbol[s] for s in dict.fromkeys(config.symbols)]
        if config.sectors:
            chosen = [i for i in chosen if i.sector in config.sectors]
    else:
        wanted = set(config.sectors) if config.sectors else set(sectors)
        chosen = sorted((i for i in instruments if i.sector in wanted), key=lambda i: i.symbol)
    if config.max_symbols is None or len(chosen) <= config.max_symbols:
        return chosen
    return _stratified(chosen, config.max_symbols)


def _stratified(instruments: list[Instrument], n: int) -> list[Instrument]:
    groups: dict[str, list[Instrument]] = {}
    for inst in sorted(instruments, key=lambda i: i.symbol):
        groups.setdefault(inst.sector, []).append(inst)
    queues = [groups[s] for s in sorted(groups)]
    picked: list[Instrument] = []
    depth = 0
    while len(picked) < n:
        for queue in queues:
            if depth < len(queue) and len(picked) < n:
                picked.append(queue[depth])
        depth += 1
    return sorted(picked, key=lambda i: i.symbol)
