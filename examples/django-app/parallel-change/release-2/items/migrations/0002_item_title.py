"""add items.title, nullable: release 1 keeps writing name only"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("items", "0001_initial")]
    phase = "expand"
    operations = [migrations.AddField(model_name="item", name="title", field=models.TextField(null=True))]
