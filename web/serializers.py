"""The chart endpoint's answer, for the OpenAPI schema and the response."""

from __future__ import annotations

from rest_framework import serializers

from web.charts import PLAN_FIELDS, SERIES_FIELDS


def _series() -> serializers.ListField:
    return serializers.ListField(child=serializers.FloatField(allow_null=True))


class ChartSerializer(serializers.Serializer):
    """A result symbol's last bars (at most 250) as the scan saw them; every series is aligned with
    ``dates`` and null where its indicator is not defined yet."""

    symbol = serializers.CharField()
    dates = serializers.ListField(child=serializers.DateField())
    plan = serializers.DictField(
        child=serializers.FloatField(allow_null=True), help_text=f"the trade plan's {', '.join(PLAN_FIELDS)}"
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields.update({name: _series() for name in SERIES_FIELDS})
        return fields
