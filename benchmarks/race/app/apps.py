"""The race harness's models, as the Django app ``race``."""

from __future__ import annotations

from django.apps import AppConfig


class RaceConfig(AppConfig):
    name = "benchmarks.race.app"
    label = "race"
    default_auto_field = "django.db.models.AutoField"
