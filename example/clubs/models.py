from django.db import models

from cachedcall import CachedCallManager


class Club(models.Model):
    name = models.CharField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class ClubClass(models.Model):
    club = models.ForeignKey(Club, on_delete=models.CASCADE, related_name="classes")
    name = models.CharField(max_length=100)
    start_time = models.TimeField()

    # update() and bulk_create() send no signals: this manager bumps versions for them.
    objects = CachedCallManager()

    def __str__(self) -> str:
        return f"{self.name} ({self.club})"
