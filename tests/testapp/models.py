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


def _no_club() -> None:
    return None


class Coach(models.Model):
    """Children a club's delete updates without signals: SET_NULL, SET_DEFAULT, SET()."""

    name = models.CharField(max_length=50)
    home = models.ForeignKey(Club, on_delete=models.SET_NULL, null=True, related_name="coaches")
    guest = models.ForeignKey(
        Club, on_delete=models.SET_DEFAULT, null=True, default=None, related_name="guest_coaches"
    )
    former = models.ForeignKey(Club, on_delete=models.SET(_no_club), null=True, related_name="former_coaches")


class Person(models.Model):
    name = models.CharField(max_length=50)
    clubs = models.ManyToManyField(Club, through="Membership", related_name="members")
    friends = models.ManyToManyField("self")  # symmetrical: clear() removes both directions


class Membership(models.Model):
    """A custom through model: written directly, it sends only its own signals."""

    person = models.ForeignKey(Person, on_delete=models.CASCADE)
    club = models.ForeignKey(Club, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, default="member")
