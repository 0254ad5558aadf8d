"""Release 1: items with a name."""

from django.db import models


class Item(models.Model):
    name = models.TextField(null=True)
