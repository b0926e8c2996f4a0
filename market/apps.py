from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class MarketConfig(AppConfig):
    name = "market"
    verbose_name = "Market data"

    def ready(self) -> None:
        """Refuse to start with a data provider this package does not have, or polygon without
        its key (TECHNIC_DATA_PROVIDER, POLYGON_API_KEY): every process sets Django up."""
        from market.providers import PROVIDER_NAMES

        provider = settings.TECHNIC_DATA_PROVIDER
        if provider not in PROVIDER_NAMES:
            names = ", ".join(PROVIDER_NAMES)
            raise ImproperlyConfigured(f"TECHNIC_DATA_PROVIDER={provider!r} must be one of: {names}")
        if provider == "polygon" and not settings.POLYGON_API_KEY:
            raise ImproperlyConfigured("TECHNIC_DATA_PROVIDER=polygon needs POLYGON_API_KEY (your Polygon.io API key)")
