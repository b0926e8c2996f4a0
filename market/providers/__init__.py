"""Market-data providers behind one interface, chosen by name.

``get_provider(name, ...)`` is the one place that turns configuration
(``TECHNIC_DATA_PROVIDER``, ``TECHNIC_DATA_PATH``, ``TECHNIC_UNIVERSE_PATH`` or the
``--provider`` / ``--data`` / ``--universe-file`` options) into a provider. A provider for a
new source implements :class:`MarketDataProvider` and gets a branch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from market.providers.base import (
    DataProviderError,
    DataSourceError,
    MarketDataProvider,
    ProviderAuthError,
    ProviderUnavailable,
    UnknownProviderError,
)
from market.providers.demo import DEMO_DEFECTS, DemoProvider, InjectedDefect
from market.providers.files import FileProvider
from market.providers.polygon import PolygonConfig, PolygonProvider
from market.providers.resilience import Resilience, RetryPolicy
from market.providers.state_stores import LocalStateStore

PROVIDER_NAMES: tuple[str, ...] = ("demo", "parquet", "csv", "polygon")

__all__ = [
    "DEMO_DEFECTS",
    "PROVIDER_NAMES",
    "DataProviderError",
    "DataSourceError",
    "DemoProvider",
    "FileProvider",
    "InjectedDefect",
    "MarketDataProvider",
    "PolygonConfig",
    "PolygonProvider",
    "ProviderAuthError",
    "ProviderUnavailable",
    "UnknownProviderError",
    "get_provider",
]


def get_provider(
    name: str,
    data_path: str | Path | None = None,
    universe_path: str | Path | None = None,
    **options: Any,
) -> MarketDataProvider:
    """The provider called ``name`` (case and surrounding spaces ignored).

    ``demo`` takes ``n_symbols`` and ``seed`` options and ignores the paths; ``parquet`` and
    ``csv`` need ``data_path`` and take no options; ``polygon`` takes ``config``
    (:class:`PolygonConfig`, or just ``api_key`` and ``base_url``) and ``resilience`` (shared
    breaker, rate limit and counts; in-process ones by default), and reads its universe from
    ``universe_path`` when given. Construction reads nothing: file problems surface as
    :class:`DataSourceError`, remote ones as :class:`ProviderUnavailable` on first use.

    Raises :class:`UnknownProviderError` for a name not in :data:`PROVIDER_NAMES`, and
    :class:`DataProviderError` for a known provider that cannot be built as configured.
    """
    key = name.strip().lower()
    if key == "demo":
        unknown = sorted(set(options) - {"n_symbols", "seed"})
        if unknown:
            raise DataProviderError(f"unknown option(s) for the demo provider: {', '.join(unknown)}")
        return DemoProvider(**options)
    if key in ("parquet", "csv"):
        if options:
            raise DataProviderError(f"unknown option(s) for the {key} provider: {', '.join(sorted(options))}")
        if data_path is None or not str(data_path).strip():
            raise DataProviderError(
                f"the {key} provider needs a bars file or folder: set TECHNIC_DATA_PATH or pass --data"
            )
        return FileProvider("parquet" if key == "parquet" else "csv", data_path, universe_path)
    if key == "polygon":
        return _polygon(universe_path, **options)
    raise UnknownProviderError(f"unknown data provider {name!r}; choose one of: {', '.join(PROVIDER_NAMES)}")


def _polygon(universe_path: str | Path | None, **options: Any) -> PolygonProvider:
    unknown = sorted(set(options) - {"config", "resilience", "api_key", "base_url"})
    if unknown:
        raise DataProviderError(f"unknown option(s) for the polygon provider: {', '.join(unknown)}")
    config = options.get("config")
    if config is None:
        config = PolygonConfig(
            options.get("api_key") or "", **({"base_url": options["base_url"]} if options.get("base_url") else {})
        )
    resilience = options.get("resilience") or Resilience.build(
        LocalStateStore(), "Polygon", RetryPolicy(), rate=25.0, threshold=5, cooldown=30.0, probe_ttl=15.0
    )
    return PolygonProvider(config, resilience, universe_path)
