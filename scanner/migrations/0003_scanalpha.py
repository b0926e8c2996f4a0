import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """ScanAlpha moves here from the alpha app with its rows: the model takes over the table
    ``alpha_scanalpha`` and renames it to this app's name."""

    dependencies = [
        ("scanner", "0002_scan_progress"),
        ("alpha", "0002_scanalpha_moves_to_scanner"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ScanAlpha",
                    fields=[
                        (
                            "scan",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                related_name="alpha",
                                serialize=False,
                                to="scanner.scan",
                            ),
                        ),
                        ("assigned_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "model",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="scans",
                                to="alpha.alphamodel",
                            ),
                        ),
                    ],
                    options={"db_table": "alpha_scanalpha"},
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name="scanalpha", table=None),
    ]
