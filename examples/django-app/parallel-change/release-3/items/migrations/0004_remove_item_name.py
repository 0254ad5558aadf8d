"""drop items.name: only release 1 and 2 read it"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("items", "0003_backfill_title")]
    phase = "contract"  # held until no host runs a release that still reads name
    operations = [migrations.RemoveField(model_name="item", name="name")]
