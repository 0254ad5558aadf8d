"""Release 3: items with title only."""

from django.db import models


class Item(models.Model):
    title = models.TextField(null=True)
