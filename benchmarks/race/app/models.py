"""Models covering every relation a write can change through.

``Parent`` has children by each ``on_delete`` Django has (``CASCADE``, ``SET_NULL``,
``SET_DEFAULT``, ``SET(callable)``), a many-to-many relation with an auto-created through
model (``tags``) and one with a custom through model (``members`` through ``Membership``).
``Parent``, ``Tag`` and ``Member`` take their primary keys from small fixed pools (readers
ask about ids 1-5 whatever was deleted); parents 1 and 2 are never deleted, since
``SET_DEFAULT`` and ``SET()`` move children to them.
"""

from __future__ import annotations

from django.db import models

from cachedcall import CachedCallManager

#: The parent a SET_DEFAULT child falls back to, and the one SET(adopter) gives.
FALLBACK, ADOPTER = 1, 2


def adopter() -> int:
    """The parent ``Adopted`` rows are moved to when theirs is deleted (``SET(callable)``)."""
    return ADOPTER


class Parent(models.Model):
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=40)
    tags = models.ManyToManyField("Tag", related_name="parents")
    members = models.ManyToManyField("Member", through="Membership", related_name="parents")

    objects = CachedCallManager()


class Tag(models.Model):
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=40)

    objects = CachedCallManager()


class Member(models.Model):
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=40)

    objects = CachedCallManager()


class Membership(models.Model):
    """The custom through model of ``Parent.members``."""

    parent = models.ForeignKey(Parent, on_delete=models.CASCADE, related_name="memberships")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=40)

    objects = CachedCallManager()

    class Meta:
        constraints = (models.UniqueConstraint(fields=["parent", "member"], name="race_membership_once"),)


class Child(models.Model):
    parent = models.ForeignKey(Parent, on_delete=models.CASCADE, related_name="children")
    name = models.CharField(max_length=40)

    objects = CachedCallManager()


class Orphan(models.Model):
    parent = models.ForeignKey(Parent, on_delete=models.SET_NULL, null=True, related_name="orphans")

    objects = CachedCallManager()


class Defaulted(models.Model):
    parent = models.ForeignKey(
        Parent, on_delete=models.SET_DEFAULT, default=FALLBACK, related_name="defaulted"
    )

    objects = CachedCallManager()


class Adopted(models.Model):
    parent = models.ForeignKey(Parent, on_delete=models.SET(adopter), related_name="adopted")

    objects = CachedCallManager()
