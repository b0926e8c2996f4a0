from django.db import migrations


class Migration(migrations.Migration):
    """ScanAlpha belongs to the scanner app now (scanner 0003 takes over its table)."""

    dependencies = [
        ("alpha", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ScanAlpha")],
            database_operations=[],
        ),
    ]
