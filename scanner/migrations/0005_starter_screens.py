"""Every existing user gets the starter screens (new users get them when created)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import migrations


def give_starter_screens(apps: Any, schema_editor: Any) -> None:
    from scanner.screens import STARTER_SCREENS

    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    screen_model = apps.get_model("scanner", "Screen")
    for user in user_model.objects.all():
        have = set(screen_model.objects.filter(owner=user).values_list("name", flat=True))
        screen_model.objects.bulk_create(
            [screen_model(owner=user, **spec) for spec in STARTER_SCREENS if spec["name"] not in have]
        )


class Migration(migrations.Migration):
    dependencies = [("scanner", "0004_screens")]
    operations = [migrations.RunPython(give_starter_screens, migrations.RunPython.noop)]
