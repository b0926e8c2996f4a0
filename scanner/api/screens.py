"""The saved screen endpoints of PRODUCT.md "Screens", and the screen editor's helpers.

``/api/screens/`` lists and creates the caller's screens, ``/api/screens/<id>`` reads, replaces
(PUT), edits (PATCH) and deletes one: another user's screen answers 404 ``SCREEN_NOT_FOUND``,
like a missing one. A screen is validated as the scan it starts would be: its options, filter,
ranking and order build a ``ScanConfig`` through ``scan_options``, so a bad one answers the
same ``INVALID_<FIELD>`` error as ``POST /scan/start``. ``/api/screens/catalogue`` is the
language's names for autocompletion, ``/api/screens/check`` parses expressions (for the error
underline) and ``/api/screens/preview`` runs a screen now and answers what it matches.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from engine.config import ConfigError
from engine.screens.catalogue import catalogue
from engine.screens.language import Expression
from infra.errors import ApiError, screen_not_found
from infra.openapi import error_response
from infra.throttles import ScopeThrottle
from market.providers import DataProviderError
from scanner.api.serializers import (
    RowScreenSerializer,
    ScanStartSerializer,
    StrictCharField,
    config_error,
    provider_unavailable,
    safe_repr,
    scan_options,
    start_options,
    unknown_field,
    validated,
)
from scanner.models import Screen
from scanner.preview import screen_preview
from scanner.screens import user_screen, user_screens

SCREEN_FIELDS = ("name", "description", "filter", "rank_by", "order", "options")
# Sent back with a screen's other fields they are ignored, so a read screen can be written back.
READ_ONLY_FIELDS = ("id", "created_at", "updated_at")
EXPRESSION_FIELDS = ("filter", "rank_by", "order")
NAME_CHARS = 100
NAME_SUGGESTIONS = 3


# --- Serializers -----------------------------------------------------------------------------


class ClosedSerializer(serializers.Serializer):
    """A request whose unknown fields answer UNKNOWN_FIELD (the schema says so)."""


class ClosedSchema(OpenApiSerializerExtension):
    target_class = ClosedSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class ScreenOptionsSerializer(ClosedSerializer, ScanStartSerializer):
    """A saved screen's scan options: any option of POST /scan/start but the screen's own
    fields (filter, rank_by, order) and async_mode/screen_id. Only those given are stored."""

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in (*EXPRESSION_FIELDS, "async_mode", "screen_id"):
            del fields[name]
        return fields


OPTION_NAMES = tuple(ScreenOptionsSerializer().fields)


class ScreenBodySerializer(serializers.Serializer):
    """A screen's fields as validated (``options`` is checked by ``scan_options`` after)."""

    name = StrictCharField(max_length=NAME_CHARS, help_text="1 to 100 characters, unique among your screens")
    description = StrictCharField(required=False, allow_blank=True, max_length=2000, default="")
    filter = StrictCharField(
        required=False, allow_blank=True, default="", help_text="a screen expression (docs/screens.md); empty: none"
    )
    rank_by = StrictCharField(
        required=False, allow_blank=True, default="", help_text="a number expression; empty: the default ranking"
    )
    order = StrictCharField(required=False, default="desc", help_text="desc (default) or asc")
    options = serializers.DictField(required=False, default=dict, help_text="scan options: sectors, min_price, ...")

    def validate_name(self, value: str) -> str:
        name = value.strip()
        if not name:
            raise serializers.ValidationError("A name must have a character other than a space.")
        if any(unicodedata.category(c) == "Cc" for c in name):
            raise serializers.ValidationError("A name cannot hold control characters.")
        return name


class ScreenWriteSerializer(ScreenBodySerializer):
    """The body of POST /api/screens/ and PUT or PATCH /api/screens/<id>."""

    def get_fields(self) -> dict[str, serializers.Field]:
        options = ScreenOptionsSerializer(required=False, help_text="scan options; default none (the scan's defaults)")
        return {**super().get_fields(), "options": options}


class ScreenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    filter = serializers.CharField(allow_blank=True)
    rank_by = serializers.CharField(allow_blank=True)
    order = serializers.ChoiceField(["desc", "asc"])
    options = ScreenOptionsSerializer(help_text="only the options the screen sets")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ScreenExpressionsSerializer(ClosedSerializer):
    filter = StrictCharField(required=False, allow_blank=True, help_text="a screen expression")
    rank_by = StrictCharField(required=False, allow_blank=True, help_text="a number expression")
    order = StrictCharField(required=False, help_text="desc or asc")


class ExpressionPartsSerializer(serializers.Serializer):
    clauses = serializers.ListField(
        child=serializers.CharField(), help_text="the top-level `and` operands as written (the whole, if none)"
    )
    names = serializers.ListField(
        child=serializers.CharField(),
        help_text="each field and call it names, as written, once, in order (a result row's screen.values keys)",
    )


class ScreenCheckSerializer(serializers.Serializer):
    valid = serializers.BooleanField(help_text="always true: an invalid expression answers 400")
    filter = ExpressionPartsSerializer(allow_null=True, help_text="null when no filter was given (or it is empty)")
    rank_by = ExpressionPartsSerializer(allow_null=True, help_text="null when no rank_by was given (or it is empty)")
    order = serializers.ChoiceField(["desc", "asc"])


class PreviewRowSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    name = serializers.CharField()
    sector = serializers.CharField()
    tech_rating = serializers.FloatField()
    screen = RowScreenSerializer()


class ScreenPreviewSerializer(serializers.Serializer):
    as_of = serializers.DateField()
    universe = serializers.IntegerField(help_text="symbols scanned")
    matched = serializers.IntegerField(help_text="result rows: symbols that passed every filter and the screen")
    skipped_by_reason = serializers.DictField(
        child=serializers.IntegerField(), help_text="the other symbols by skip reason (not_matched: the screen)"
    )
    top = PreviewRowSerializer(many=True, help_text="the first 10 result rows, best first")


# --- Validation ------------------------------------------------------------------------------


def _closed(
    data: Any, known: tuple[str, ...], ignored: tuple[str, ...] = (), what: str = "a screen"
) -> Mapping[str, Any]:
    """``data`` if it is a JSON object of ``known`` (or ``ignored``) fields; ApiError otherwise."""
    if not isinstance(data, Mapping):
        raise ApiError(
            "INVALID_BODY",
            f"The body must be a JSON object ({what}), not {type(data).__name__}.",
            suggestions=[f"Send an object with some of: {', '.join(known)}"],
            details={"value": safe_repr(data)},
        )
    unknown = [name for name in data if name not in known and name not in ignored]
    if unknown:
        raise unknown_field(unknown, list(known))
    return data


def screen_fields(data: Any, current: Screen | None = None) -> dict[str, Any]:
    """The fields to store from a screen body: all of them for POST and PUT (``current``
    None; missing ones take their defaults), or ``current``'s fields overlaid with the body's
    for PATCH (an ``options`` given replaces the screen's options whole).

    ``options`` keep only the options given, as the scan's config holds them (symbols upper
    case, numbers as floats where a float is expected). Raises ApiError (400): INVALID_BODY,
    UNKNOWN_FIELD (also inside ``options``), INVALID_NAME, INVALID_DESCRIPTION, INVALID_OPTIONS
    or the option's own INVALID_<OPTION>, INVALID_FILTER / INVALID_RANK_BY (with
    ``details.position`` and ``details.expected``) and INVALID_ORDER."""
    body = {k: v for k, v in _closed(data, SCREEN_FIELDS, READ_ONLY_FIELDS).items() if k in SCREEN_FIELDS}
    if current is not None:
        body = {**{name: getattr(current, name) for name in SCREEN_FIELDS}, **body}
    fields = validated(ScreenBodySerializer, body)
    options = fields["options"]
    unknown = [name for name in options if name not in OPTION_NAMES]
    if unknown:
        error = unknown_field(unknown, list(OPTION_NAMES))
        error.details["object"] = "options"
        raise error
    config, _ = scan_options({**options, **{name: fields[name] for name in EXPRESSION_FIELDS}})
    stored = config.as_dict()
    fields["options"] = {name: stored[name] for name in options}
    for name in ("filter", "rank_by"):
        text = getattr(config, name)
        fields[name] = text if text.strip() else ""  # blank means none, as in a scan
    fields["order"] = config.order
    return fields


def _name_taken(screen: Screen) -> ApiError:
    """409 for ``screen``'s name, suggesting free names and the screen that has it."""
    have = set(Screen.objects.filter(owner_id=screen.owner_id).values_list("name", flat=True))
    clash = Screen.objects.filter(owner_id=screen.owner_id, name=screen.name).exclude(pk=screen.pk)
    existing = clash.values_list("pk", flat=True).first()
    free: list[str] = []
    n = 2
    while len(free) < NAME_SUGGESTIONS:
        suffix = f" ({n})"
        candidate = screen.name[: NAME_CHARS - len(suffix)] + suffix
        if candidate not in have:
            free.append(candidate)
        n += 1
    return ApiError(
        "SCREEN_NAME_TAKEN",
        f"You already have a screen named {screen.name!r}.",
        status.HTTP_409_CONFLICT,
        [*free, f"PUT or PATCH /api/screens/{existing} changes that one"],
        {"name": screen.name, "screen_id": existing},
    )


def screen_save(screen: Screen) -> Screen:
    """Save ``screen`` (created or changed); raises ApiError 409 SCREEN_NAME_TAKEN if its
    owner has another screen of that name (also when one is saved concurrently)."""
    if Screen.objects.filter(owner_id=screen.owner_id, name=screen.name).exclude(pk=screen.pk).exists():
        raise _name_taken(screen)
    try:
        with transaction.atomic():
            screen.save()
    except IntegrityError as err:  # the unique (owner, name) constraint, lost to a concurrent save
        raise _name_taken(screen) from err
    return screen


def _parts(expression: Expression | None) -> dict[str, list[str]] | None:
    if expression is None:
        return None
    return {
        "clauses": [expression.source(c) for c in expression.clauses],
        "names": [expression.source(leaf) for leaf in expression.leaves],
    }


def _owned(request: Request, screen_id: int) -> Screen:
    screen = user_screen(request.user, screen_id)
    if screen is None:
        raise screen_not_found(screen_id)
    return screen


# --- Views -----------------------------------------------------------------------------------

INVALID = error_response(
    'INVALID_BODY, UNKNOWN_FIELD (details.object "options" for an unknown option), INVALID_NAME, '
    "INVALID_DESCRIPTION, INVALID_OPTIONS, INVALID_<OPTION> (e.g. INVALID_MIN_PRICE, INVALID_SECTOR), "
    "INVALID_FILTER and INVALID_RANK_BY (with details.position and details.expected), INVALID_ORDER, "
    "MALFORMED_JSON"
)
NOT_FOUND = {404: error_response("SCREEN_NOT_FOUND: no such saved screen among the caller's")}
NAME_TAKEN = {409: error_response("SCREEN_NAME_TAKEN: the caller has a screen of that name (details.screen_id)")}
SAVE_NOTE = (
    "Unknown fields answer UNKNOWN_FIELD, except the read-only id, created_at and updated_at, which are "
    "ignored. Saving validates the screen as POST /scan/start would run it (not its sectors and symbols, "
    "checked when it runs)."
)


class ScreenListView(APIView):
    @extend_schema(responses={200: ScreenSerializer(many=True)})
    def get(self, request: Request) -> Response:
        """The caller's saved screens, by name (new users start with the starter screens)."""
        return Response(ScreenSerializer(user_screens(request.user), many=True).data)

    @extend_schema(
        request=ScreenWriteSerializer,
        responses={201: ScreenSerializer, 400: INVALID, **NAME_TAKEN},
        description=SAVE_NOTE,
    )
    def post(self, request: Request) -> Response:
        """Save a new screen; 201 with it."""
        owner_id = request.user.pk
        assert owner_id is not None, "the view's permission lets users only"
        screen = screen_save(Screen(owner_id=owner_id, **screen_fields(request.data)))
        return Response(ScreenSerializer(screen).data, status=status.HTTP_201_CREATED)


class ScreenDetailView(APIView):
    @extend_schema(responses={200: ScreenSerializer, **NOT_FOUND})
    def get(self, request: Request, screen_id: int) -> Response:
        """One of the caller's saved screens."""
        return Response(ScreenSerializer(_owned(request, screen_id)).data)

    @extend_schema(
        request=ScreenWriteSerializer,
        responses={200: ScreenSerializer, 400: INVALID, **NOT_FOUND, **NAME_TAKEN},
        description=SAVE_NOTE + " Fields left out take their defaults (name is required).",
    )
    def put(self, request: Request, screen_id: int) -> Response:
        """Replace a saved screen; an invalid body changes nothing. Scans it ran keep their text."""
        return self._save(request, screen_id, partial=False)

    @extend_schema(
        request=ScreenWriteSerializer,
        responses={200: ScreenSerializer, 400: INVALID, **NOT_FOUND, **NAME_TAKEN},
        description=SAVE_NOTE + " Fields left out keep their values; options given replace the options whole.",
    )
    def patch(self, request: Request, screen_id: int) -> Response:
        """Change some fields of a saved screen; an invalid body changes nothing."""
        return self._save(request, screen_id, partial=True)

    @extend_schema(responses={204: None, **NOT_FOUND})
    def delete(self, request: Request, screen_id: int) -> Response:
        """Delete a saved screen; the scans it ran stay (with its text as they ran it)."""
        _owned(request, screen_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def _save(request: Request, screen_id: int, partial: bool) -> Response:
        screen = _owned(request, screen_id)
        for name, value in screen_fields(request.data, screen if partial else None).items():
            setattr(screen, name, value)
        return Response(ScreenSerializer(screen_save(screen)).data)


class CatalogueFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(["number", "boolean"])
    group = serializers.CharField()
    description = serializers.CharField()
    last_only = serializers.BooleanField(help_text="exists on the last bar only (no history function takes it)")
    cross_sectional = serializers.BooleanField(help_text="depends on the scan's other symbols (rs_rating)")
    daily_only = serializers.BooleanField(help_text="not available inside weekly(...)")


class CatalogueFunctionSerializer(serializers.Serializer):
    name = serializers.CharField()
    params = serializers.ListField(
        child=serializers.ChoiceField(["number", "boolean", "any", "window"]),
        help_text="window: a whole number literal from 1 to limits.max_window",
    )
    returns = serializers.ChoiceField(["number", "boolean", "same"], help_text="same: the type of its `any` argument")
    signature = serializers.CharField()
    description = serializers.CharField()
    history = serializers.BooleanField()
    last_only = serializers.BooleanField()


class CatalogueLimitsSerializer(serializers.Serializer):
    max_length = serializers.IntegerField()
    max_depth = serializers.IntegerField()
    max_window = serializers.IntegerField()


class CatalogueSerializer(serializers.Serializer):
    fields = CatalogueFieldSerializer(many=True)  # type: ignore[assignment]  # a field named like Serializer.fields
    functions = CatalogueFunctionSerializer(many=True)
    keywords = serializers.ListField(child=serializers.CharField())
    operators = serializers.ListField(child=serializers.CharField())
    limits = CatalogueLimitsSerializer()


class ScreenCatalogueView(APIView):
    @extend_schema(responses={200: CatalogueSerializer})
    def get(self, request: Request) -> Response:
        """Every field and function of the screen language, its keywords, operators and limits."""
        return Response(catalogue())


class ScreenCheckView(APIView):
    @extend_schema(
        request=ScreenExpressionsSerializer,
        responses={
            200: ScreenCheckSerializer,
            400: error_response(
                "INVALID_FILTER, INVALID_RANK_BY (details.position: the character offset, details.expected: "
                "what would be accepted there; suggestions: the nearest names), INVALID_ORDER, UNKNOWN_FIELD, "
                "INVALID_BODY, MALFORMED_JSON"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        """Parse and check a filter and ranking as a scan would; 200 with their clauses and names."""
        body = _closed(request.data, EXPRESSION_FIELDS, what="filter, rank_by and order")
        config, _ = scan_options(dict(body))
        screen = config.screen
        answer = {
            "valid": True,
            "filter": _parts(screen.filter if screen else None),
            "rank_by": _parts(screen.rank_by if screen else None),
            "order": config.order,
        }
        return Response(ScreenCheckSerializer(answer).data)


class ScreenPreviewView(APIView):
    throttle_classes = [*APIView.throttle_classes, ScopeThrottle]
    throttle_scope = "screen_preview"

    @extend_schema(
        request=ScanStartSerializer,
        responses={
            200: ScreenPreviewSerializer,
            400: error_response(
                "INVALID_<FIELD> (INVALID_FILTER and INVALID_RANK_BY with details.position and details.expected), "
                "INVALID_SECTOR, INVALID_SYMBOL, INVALID_AS_OF, UNKNOWN_FIELD, INVALID_BODY, MALFORMED_JSON"
            ),
            404: error_response("SCREEN_NOT_FOUND: no such saved screen among the caller's"),
            503: error_response(
                "DATA_PROVIDER_AUTH, DATA_PROVIDER_UNAVAILABLE, DATA_SOURCE_ERROR or DATA_PROVIDER_ERROR: "
                "the market data cannot be read; REDIS_UNAVAILABLE"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        """What a screen matches now: the body of POST /scan/start (``screen_id`` and overrides
        too; ``async_mode`` is ignored), scanned in the request; nothing is recorded."""
        config = start_options(request.user, request.data)[0]
        try:
            preview = screen_preview(config)
        except ConfigError as err:
            raise config_error(err, getattr(config, err.field, None)) from err
        except DataProviderError as err:
            raise provider_unavailable(err) from err
        return Response(ScreenPreviewSerializer(preview).data)
