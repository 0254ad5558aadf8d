"""Release 2: items with name and title (writes both, reads title, falls back to name)."""

from django.db import models


class Item(models.Model):
    name = models.TextField(null=True)
    title = models.TextField(null=True)
