"""A second app: the database's head is the applied leaf migration of each app."""

from django.db import models


class Note(models.Model):
    text = models.TextField()
