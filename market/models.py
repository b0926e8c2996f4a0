"""The durable market data store: daily bars of remote providers, kept in the database.

Bars are keyed by (source, symbol, day). What the store knows beyond the bars themselves:
per symbol the market days it has asked the provider about (``SymbolCoverage``: a day in that
range without a bar is a day the provider has no bar for), per source the market days whose
whole-market answer it holds (``StoredDay``), its market calendar and how far splits were checked.
A day is recorded as known only once its session has closed, so a bar stored while the session
was open is fetched again (and replaced) after the close.
"""

from __future__ import annotations

from django.db import models


class MarketSource(models.Model):
    """One remote data source (a provider and its endpoint), e.g. ``polygon:https://api.polygon.io``."""

    key = models.CharField(max_length=300, unique=True)
    calendar = models.JSONField(default=list, help_text="market days, as days since 1970-01-01")
    calendar_read_at = models.DateTimeField(null=True, blank=True)
    splits_through = models.DateField(
        null=True, blank=True, help_text="splits executed up to this day are applied to the stored bars"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class StoredBar(models.Model):
    source = models.ForeignKey(MarketSource, on_delete=models.CASCADE, related_name="bars")
    symbol = models.CharField(max_length=32)
    day = models.DateField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()

    class Meta:
        # Also the index every window read uses (source, symbol, day range).
        constraints = [
            models.UniqueConstraint(fields=("source", "symbol", "day"), name="one_bar_per_source_symbol_day")
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.day}"


class SymbolCoverage(models.Model):
    """Every market day from ``known_from`` to ``known_to`` was answered for this symbol."""

    source = models.ForeignKey(MarketSource, on_delete=models.CASCADE, related_name="coverage")
    symbol = models.CharField(max_length=32)
    known_from = models.DateField()
    known_to = models.DateField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("source", "symbol"), name="one_coverage_per_source_symbol")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.known_from}..{self.known_to}"


class StoredDay(models.Model):
    """A closed market day whose bars of the whole market (a grouped-daily answer) are stored."""

    source = models.ForeignKey(MarketSource, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    rows = models.PositiveIntegerField()
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("source", "day"), name="one_stored_day_per_source")]

    def __str__(self) -> str:
        return f"{self.day} ({self.rows} bars)"
