"""copy name into title for the rows written before release 2"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("items", "0002_item_title")]
    phase = "migrate"  # a backfill: before the switch, like expand
    operations = [
        migrations.RunSQL("UPDATE items_item SET title = name WHERE title IS NULL", reverse_sql=migrations.RunSQL.noop),
    ]
