"""What the scan endpoints accept and answer.

Request serializers are strict: a JSON number where a number is expected (never a string or
a boolean), a string where a string is, no unknown field. ``scan_options`` and ``validated``
turn their first problem into an ``ApiError`` whose code names the field
(``INVALID_MAX_SYMBOLS``, ``INVALID_SECTOR``, ...). Response serializers render what the
selectors build and describe it in the OpenAPI schema.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers, status

from engine.config import RANGES, ConfigError, ScanConfig
from engine.scan import INDICATOR_FIELDS
from engine.screens.language import ScreenError
from infra.errors import ApiError, screen_not_found
from market.providers import DataProviderError
from market.providers.base import ERROR_SUGGESTIONS, provider_error_code
from progress.tracker import STAGES
from scanner.models import ScanStatus, Screen, SkipReason
from scanner.screens import screen_options, user_screen

SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,14}")
PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
# Codes whose field name is plural; every other field's code is INVALID_<FIELD>.
FIELD_CODES = {"symbols": "INVALID_SYMBOL", "sectors": "INVALID_SECTOR"}
VALUE_REPR_CHARS = 200


def _range(name: str) -> dict[str, Any]:
    """The option's bounds, as ``ScanConfig`` checks them."""
    low, high = RANGES[name]
    return {"min_value": low, "max_value": high}


# --- Strict fields ---------------------------------------------------------------------------


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "An integer is required (a JSON number without a fraction)."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "A number is required (not a string or a boolean)."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        try:
            return float(data)
        except OverflowError as err:  # an integer beyond any float
            message = self.error_messages["max_value"].format(max_value=self.max_value)
            raise serializers.ValidationError(message, code="max_value") from err


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "true or false is required."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    """A JSON string, taken as sent (not trimmed)."""

    default_error_messages = {"invalid": "A string is required."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class SymbolField(StrictCharField):
    """A ticker: ASCII, upper-cased, then 1-15 of A-Z 0-9 . - starting with a letter or digit."""

    default_error_messages = {
        "symbol": "A symbol is 1 to 15 ASCII letters, digits, '.' or '-', starting with a letter or digit."
    }

    def to_internal_value(self, data: Any) -> str:
        symbol = super().to_internal_value(data)
        if not symbol.isascii() or not SYMBOL.fullmatch(symbol.upper()):
            self.fail("symbol")
        return symbol.upper()


# --- Requests --------------------------------------------------------------------------------


class ScanStartSerializer(serializers.Serializer):
    """The body of POST /scan/start. Every field is optional; lists are de-duplicated."""

    universe = StrictCharField(required=False, help_text='Only "default" (the configured universe).')
    symbols = serializers.ListField(
        child=SymbolField(max_length=15), required=False, max_length=20_000, help_text="Scan these symbols only."
    )
    sectors = serializers.ListField(
        child=StrictCharField(max_length=100), required=False, max_length=100, help_text="GICS sector names."
    )
    max_symbols = StrictIntegerField(required=False, **_range("max_symbols"))
    min_tech_rating = StrictFloatField(required=False, **_range("min_tech_rating"))
    lookback_days = StrictIntegerField(required=False, **_range("lookback_days"))
    as_of = serializers.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
    account_size = StrictFloatField(required=False, **_range("account_size"))
    risk_pct = StrictFloatField(required=False, help_text="0.01 = 1% per trade", **_range("risk_pct"))
    target_rr = StrictFloatField(required=False, **_range("target_rr"))
    min_price = StrictFloatField(required=False, **_range("min_price"))
    min_dollar_volume = StrictFloatField(required=False, **_range("min_dollar_volume"))
    filter = StrictCharField(
        required=False, allow_blank=True, help_text="a screen expression (docs/screens.md); empty: no filter"
    )
    rank_by = StrictCharField(
        required=False, allow_blank=True, help_text="a number expression to rank by; empty: the default ranking"
    )
    order = StrictCharField(required=False, help_text="desc (default) or asc")
    screen_id = StrictIntegerField(
        required=False, min_value=1, help_text="run this saved screen; the other fields given override its own"
    )
    async_mode = StrictBooleanField(
        required=False, default=True, help_text="false: wait for the results (up to the server's limit)."
    )

    def validate_symbols(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def validate_sectors(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ScanStartSchema(OpenApiSerializerExtension):
    """Documents that POST /scan/start rejects fields it does not know."""

    target_class = ScanStartSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class ResultsQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        ["json", "csv"], default="json", help_text="csv: a text/csv attachment of every row (no paging)"
    )
    limit = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="result rows per page; at most, and by default, the server's page size (5000 unless configured)",
    )
    offset = serializers.IntegerField(min_value=0, default=0, help_text="the first result row of the page")


class HistoryQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=PAGE_SIZE)
    offset = serializers.IntegerField(min_value=0, default=0)


def scan_options(data: Any) -> tuple[ScanConfig, bool]:
    """The ScanConfig and ``async_mode`` of a POST /scan/start body.

    Raises ApiError (400): ``INVALID_BODY`` if it is not a JSON object, ``UNKNOWN_FIELD``,
    or the field's code (see ``field_code``) with ``details`` naming the field and value.
    """
    if not isinstance(data, Mapping):
        raise ApiError(
            "INVALID_BODY",
            f"The body must be a JSON object of scan options, not {type(data).__name__}.",
            suggestions=['Send e.g. {"sectors": ["Energy"], "max_symbols": 50}'],
            details={"value": safe_repr(data)},
        )
    known = list(ScanStartSerializer().fields)
    unknown = [name for name in data if name not in known]
    if unknown:
        raise unknown_field(unknown, known)
    options = dict(validated(ScanStartSerializer, data))
    async_mode = options.pop("async_mode")
    options.pop("screen_id", None)  # resolved by the view (``saved_screen_body``)
    for name in ("symbols", "sectors"):
        if name in options:
            options[name] = tuple(options[name])
    try:
        config = ScanConfig(**options)
    except ConfigError as err:
        raise config_error(err, data.get(err.field)) from err
    return config, async_mode


def start_options(user: Any, data: Any) -> tuple[ScanConfig, bool, Screen | None]:
    """The config, async_mode and saved screen of a POST /scan/start body: with ``screen_id`` the
    caller's saved screen's options, filter and ranking, overridden by the fields given beside
    it (404 SCREEN_NOT_FOUND unless it is the caller's)."""
    saved = None
    if isinstance(data, Mapping) and "screen_id" in data:
        screen_id = validated(ScanStartSerializer, {"screen_id": data["screen_id"]})["screen_id"]
        saved = user_screen(user, screen_id)
        if saved is None:
            raise screen_not_found(screen_id)
        data = {**screen_options(saved), **{k: v for k, v in data.items() if k != "screen_id"}}
    config, async_mode = scan_options(data)
    return config, async_mode, saved


def provider_unavailable(err: DataProviderError) -> ApiError:
    """A data provider failure as the 503 of its code, with what to do next."""
    code = provider_error_code(err)
    suggestions = list(ERROR_SUGGESTIONS.get(code, ("Try again later",)))
    return ApiError(code, str(err), status.HTTP_503_SERVICE_UNAVAILABLE, suggestions)


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """``data`` validated by ``serializer_class``; raises ApiError (400) for its first invalid field."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data)
    name, problems = next(iter(serializer.errors.items()))
    value = data.get(name)
    details: dict[str, Any] = {"field": name}
    if isinstance(problems, Mapping):  # a list item's problems, by index
        index, problems = next(iter(problems.items()))
        value, details["index"] = value[index], index
    details["value"] = safe_repr(value)
    raise ApiError(field_code(name), f"{name}: {' '.join(str(p) for p in problems)}", details=details)


def unknown_field(unknown: list[str], known: list[str]) -> ApiError:
    return ApiError(
        "UNKNOWN_FIELD",
        f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(repr(n) for n in unknown)}.",
        suggestions=difflib.get_close_matches(unknown[0], known, n=3) or [f"Known fields: {', '.join(known)}"],
        details={"fields": [safe_repr(n) for n in unknown]},
    )


def config_error(err: ConfigError, value: Any) -> ApiError:
    """A ScanConfig or universe problem (unknown sector, as_of outside the data, ...) as a 400."""
    details = {"field": err.field, "value": safe_repr(value)}
    if isinstance(err, ScreenError):
        details.update(err.details())
    return ApiError(field_code(err.field), str(err), suggestions=err.suggestions, details=details)


def field_code(name: str) -> str:
    return FIELD_CODES.get(name, f"INVALID_{name.upper()}")


def safe_repr(value: Any) -> str:
    """``repr(value)``, shortened: control characters and odd Unicode show escaped."""
    text = ascii(value)
    return text if len(text) <= VALUE_REPR_CHARS else text[: VALUE_REPR_CHARS - 3] + "..."


def scan_links(scan_id: Any) -> dict[str, str]:
    return {
        "progress_url": reverse("scan-progress", args=[scan_id]),
        "websocket_url": f"/scan/ws/{scan_id}",  # a Channels route (live/routing.py): no reverse()
        "sse_url": reverse("scan-sse", args=[scan_id]),
        "results_url": reverse("scan-results", args=[scan_id]),
    }


# --- Responses -------------------------------------------------------------------------------


class ScanLinksSerializer(serializers.Serializer):
    progress_url = serializers.CharField()
    websocket_url = serializers.CharField()
    sse_url = serializers.CharField()
    results_url = serializers.CharField()


class ScanStartedSerializer(ScanLinksSerializer):
    scan_id = serializers.UUIDField()
    status = serializers.ChoiceField(ScanStatus.choices)
    message = serializers.CharField(required=False, help_text="Set when async_mode false ran out of time.")


class ScanCancelSerializer(serializers.Serializer):
    scan_id = serializers.UUIDField()
    status = serializers.ChoiceField(ScanStatus.choices)
    cancel_requested = serializers.BooleanField()


class ScanErrorSerializer(serializers.Serializer):
    """A failed scan's error; ``suggestions`` (what to do next) for the codes that have some."""

    code = serializers.CharField()
    message = serializers.CharField()
    suggestions = serializers.ListField(child=serializers.CharField(), required=False)

    def to_representation(self, instance: Any) -> Any:
        suggestions = ERROR_SUGGESTIONS.get(instance["code"]) if isinstance(instance, Mapping) else None
        if suggestions:
            instance = {**instance, "suggestions": list(suggestions)}
        return super().to_representation(instance)


class StageTimingSerializer(serializers.Serializer):
    started = serializers.DateTimeField(allow_null=True)
    ended = serializers.DateTimeField(allow_null=True)
    seconds = serializers.FloatField(allow_null=True)


class DataSourceSerializer(serializers.Serializer):
    provider = serializers.CharField()
    data_path = serializers.CharField(allow_null=True, help_text="the file's name; its full server path for staff")
    universe_path = serializers.CharField(allow_null=True, help_text="the file's name; its full server path for staff")


class ManifestScreenSerializer(serializers.Serializer):
    filter = serializers.CharField(allow_blank=True, help_text="the filter's text as the scan ran it")
    rank_by = serializers.CharField(allow_blank=True)
    order = serializers.CharField()
    screen_id = serializers.IntegerField(allow_null=True, help_text="the saved screen it came from, if any")


class ManifestSerializer(serializers.Serializer):
    """What it takes to reproduce a scan."""

    config_hash = serializers.CharField(help_text="sha256 of the config as JSON with sorted keys, no spaces")
    engine_version = serializers.CharField()
    data_provider = serializers.CharField()
    data_source = DataSourceSerializer()
    as_of = serializers.DateField(allow_null=True)
    screen = ManifestScreenSerializer()
    last_bar = serializers.DictField(
        child=serializers.DateField(), help_text="per result symbol, the date of the last bar used"
    )


class ScanDetailSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(ScanStatus.choices)
    config = serializers.DictField()
    data_provider = serializers.CharField()
    synthetic = serializers.BooleanField()
    as_of = serializers.DateField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = ScanErrorSerializer(allow_null=True)
    metrics = serializers.DictField()
    stage_timings = serializers.DictField(child=StageTimingSerializer(), help_text=f"keys: {', '.join(STAGES)}")
    manifest = ManifestSerializer()


class RowScreenSerializer(serializers.Serializer):
    values = serializers.DictField(
        help_text="each field and call the filter and rank_by name, as written, and the rank_by expression: "
        "its value on the last bar (a number, true/false, or null when undefined)"
    )
    rank = serializers.IntegerField(help_text="the row's place in the scan's order, 1 first")


class ResultRowSerializer(serializers.Serializer):
    """One scanned symbol, as in the CSV export and the command line; indicator fields are
    numbers or null."""

    symbol = serializers.CharField()
    name = serializers.CharField()
    sector = serializers.CharField()
    as_of = serializers.DateField()
    close = serializers.FloatField()
    tech_rating = serializers.FloatField()
    signal = serializers.CharField()
    subscores = serializers.DictField(child=serializers.FloatField())
    alpha_5d = serializers.FloatField(allow_null=True)
    alpha_10d = serializers.FloatField(allow_null=True)
    entry = serializers.FloatField(allow_null=True)
    stop = serializers.FloatField(allow_null=True)
    target = serializers.FloatField(allow_null=True)
    reward_risk = serializers.FloatField(allow_null=True)
    position_size = serializers.IntegerField(allow_null=True)
    flags = serializers.ListField(child=serializers.CharField(), help_text="quality_flags, then risk_flags")
    quality_flags = serializers.ListField(
        child=serializers.CharField(), help_text="the data's suspect bars, `kind:YYYY-MM-DD` (docs/data.md)"
    )
    risk_flags = serializers.ListField(
        child=serializers.CharField(), help_text="the setup's and the plan's risks, and why an alpha is empty"
    )
    screen = RowScreenSerializer()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields.update({name: serializers.FloatField(allow_null=True) for name in INDICATOR_FIELDS})
        return fields


class SkipSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    reason = serializers.ChoiceField(SkipReason.choices)
    detail = serializers.CharField()


class ScanResultsSerializer(serializers.Serializer):
    """A page of a scan's results (the first holds every row unless there are more than the
    server's page size); ``scan`` and ``skipped`` are whole on every page."""

    scan = ScanDetailSerializer()
    results = ResultRowSerializer(many=True, help_text="this page's rows, best first")
    skipped = SkipSerializer(many=True)
    count = serializers.IntegerField(help_text="result rows in all pages")
    next = serializers.URLField(allow_null=True, help_text="the next page's URL; null on the last page")
    previous = serializers.URLField(allow_null=True, help_text="the previous page's URL; null on the first")


class ActiveScanSerializer(ScanLinksSerializer):
    scan_id = serializers.UUIDField()
    status = serializers.ChoiceField(ScanStatus.choices)
    current_stage = serializers.ChoiceField(STAGES, allow_null=True)
    overall_progress = serializers.FloatField()
    created_at = serializers.DateTimeField()


class ScanSummarySerializer(serializers.Serializer):
    scan_id = serializers.UUIDField()
    status = serializers.ChoiceField(ScanStatus.choices)
    config = serializers.DictField()
    as_of = serializers.DateField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    result_count = serializers.IntegerField(allow_null=True)
    skipped_count = serializers.IntegerField(allow_null=True)
    error = ScanErrorSerializer(allow_null=True)
    results_url = serializers.CharField()


class HistoryPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ScanSummarySerializer(many=True)


class RatingChangeSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    before = serializers.FloatField()
    after = serializers.FloatField()
    change = serializers.FloatField()


class ScanDiffSerializer(serializers.Serializer):
    scan_id = serializers.UUIDField()
    other_id = serializers.UUIDField()
    entered = serializers.ListField(child=serializers.CharField())
    left = serializers.ListField(child=serializers.CharField())
    rating_changes = RatingChangeSerializer(many=True)
