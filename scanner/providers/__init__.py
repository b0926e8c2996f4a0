"""Market-data providers behind one interface, chosen by name.

``get_provider(name, ...)`` is the one place that turns configuration
(``TECHNIC_DATA_PROVIDER``, ``TECHNIC_DATA_PATH``, ``TECHNIC_UNIVERSE_PATH`` or the
``--provider`` / ``--data`` / ``--universe-file`` options) into a provider. A provider for a
new source implements :class:`MarketDataProvider` and gets a branch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanner.providers.base import (
    DataProviderError,
    DataSourceError,
    MarketDataProvider,
    UnknownProviderError,
)
from scanner.providers.demo import DEMO_DEFECTS, DemoProvider, InjectedDefect
from scanner.providers.files import FileProvider

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
    ``csv`` need ``data_path`` and take no options. Construction reads nothing: file
    problems surface as :class:`DataSourceError` on first use.

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
        raise DataProviderError("polygon provider is not available yet")
    raise UnknownProviderError(f"unknown data provider {name!r}; choose one of: {', '.join(PROVIDER_NAMES)}")
