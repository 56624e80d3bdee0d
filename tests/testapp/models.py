from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models

from cachedcall import CachedCallManager


class Club(models.Model):
    name = models.CharField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50)


class ClubClass(models.Model):
    club = models.ForeignKey(Club, on_delete=models.CASCADE, related_name="classes")
    name = models.CharField(max_length=50)
    weekday = models.IntegerField(default=0)
    start_time = models.TimeField(null=True)
    tags = models.ManyToManyField(Tag, related_name="classes")

    objects = CachedCallManager()

    class Meta:
        ordering = ["start_time", "pk"]


class Place(models.Model):
    name = models.CharField(max_length=50)


class Restaurant(Place):
    stars = models.IntegerField(default=0)


class Note(models.Model):
    text = models.CharField(max_length=50)


class TaggedItemBase(models.Model):
    """A generic foreign key inherited from an abstract base, as django-taggit's."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    object_id = models.IntegerField(db_index=True)
    content_object = GenericForeignKey("content_type", "object_id")

    class Meta:
        abstract = True


class TaggedItem(TaggedItemBase):
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="tagged_items")


class PinnedItem(TaggedItem):
    """A multi-table child: its generic foreign key lives in the parent's table."""

    rank = models.IntegerField(default=0)
