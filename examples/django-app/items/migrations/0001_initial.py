"""create items (id, name)"""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    # Slipway: "expand" (the default) runs before the switch, "contract" once no host runs a release without it.
    phase = "expand"
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.TextField(null=True)),
            ],
        ),
    ]
