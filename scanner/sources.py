"""Which market data a scan reads, and one provider instance per process for it.

A scan records its source (provider name and paths) so every worker builds the same
provider; building it once per process means a parquet file is read once, not per task.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from cache_admin import store as cache
from scanner.engine.types import Instrument
from scanner.providers import MarketDataProvider, get_provider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    provider: str
    data_path: str = ""
    universe_path: str = ""

    @classmethod
    def from_settings(cls) -> DataSource:
        return cls(
            settings.TECHNIC_DATA_PROVIDER, settings.TECHNIC_DATA_PATH or "", settings.TECHNIC_UNIVERSE_PATH or ""
        )

    def cache_namespace(self) -> str:
        """Names this data in cache keys; changes when a data file changes."""
        if self.provider == "demo":
            return f"demo-{settings.TECHNIC_DEMO_SYMBOLS}"
        digest = hashlib.sha1(usedforsecurity=False)
        for raw in (self.data_path, self.universe_path):
            path = Path(raw)
            digest.update(str(path.resolve()).encode())
            if path.is_file():
                stat = path.stat()
                digest.update(f"{stat.st_mtime_ns}:{stat.st_size}".encode())
        return f"{self.provider}-{digest.hexdigest()[:12]}"


def provider_for(source: DataSource) -> MarketDataProvider:
    """The process-wide provider for ``source`` (raises DataProviderError if unusable)."""
    return _provider(source, settings.TECHNIC_DEMO_SYMBOLS)


def instruments_for(source: DataSource) -> list[Instrument]:
    """The source's universe, read through the price cache (from the provider when the cache is down)."""
    provider = provider_for(source)
    try:
        return cache.universe(source.cache_namespace(), provider.instruments)
    except cache.CacheUnavailable as err:
        logger.warning("universe of %s read uncached: %s", source.provider, err)
        return list(provider.instruments())


@functools.cache
def _provider(source: DataSource, demo_symbols: int) -> MarketDataProvider:
    if source.provider == "demo":
        return get_provider("demo", n_symbols=demo_symbols)
    return get_provider(source.provider, data_path=source.data_path or None, universe_path=source.universe_path or None)
