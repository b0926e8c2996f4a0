"""The engine's configuration error, shared by the scan options and the screen language."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid. ``field`` names it; the message is one line."""

    def __init__(self, field_name: str, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.field = field_name
        self.suggestions = suggestions or []
