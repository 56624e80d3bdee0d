"""A QuerySet and Manager that bump versions on the writes Django sends no signals for.

``update()``, ``bulk_create()`` and ``bulk_update()`` send no ``post_save``; with this
QuerySet they bump what they change, after the commit like every other bump.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from typing import TypeVar

from django.db import models
from django.db import transaction

from cachedcall import bumps
from cachedcall import conf
from cachedcall.versions import label
from cachedcall.versions import shapes
from cachedcall.versions import write_keys

__all__ = ["CachedCallManager", "CachedCallQuerySet"]

_M = TypeVar("_M", bound=models.Model)


class CachedCallQuerySet(models.QuerySet[_M]):
    """A QuerySet whose bulk writes bump the model's versions."""

    def _table_and_epoch(self) -> list[str]:
        base = f"{conf.get().key_prefix}:v:{label(self.model)}"
        return [base, base + ":*"]

    def update(self, **kwargs: Any) -> int:
        # The rows are not named: bump the table and the epoch that every row and scope
        # dependency of this model also reads. Coarse, but one bump and no extra query.
        with transaction.atomic(using=self.db, savepoint=False):
            count = super().update(**kwargs)
            bumps.request(self._table_and_epoch(), self.db)
        return count

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            prefix = conf.get().key_prefix
            keys = [k for obj in created for k in write_keys(obj, prefix)]
            bumps.request(dict.fromkeys(keys or self._table_and_epoch()[:1]), self.db)
        return created

    def bulk_update(self, objs: Iterable[_M], fields: Iterable[str], *args: Any, **kwargs: Any) -> int:
        objs = list(objs)
        fields = list(fields)
        with transaction.atomic(using=self.db, savepoint=False):
            count = super().bulk_update(objs, fields, *args, **kwargs)
            prefix = conf.get().key_prefix
            keys = [k for obj in objs for k in write_keys(obj, prefix)]
            scoped = {name for shape in shapes(self.model) for name in shape}
            attnames = {getattr(self.model._meta.get_field(f), "attname", f) for f in fields}
            if scoped & attnames:
                # Rows may have left scopes whose old values we never read.
                keys.extend(self._table_and_epoch())
            bumps.request(dict.fromkeys(keys), self.db)
        return count

    def delete(self) -> tuple[int, dict[str, int]]:
        # post_delete bumps each row; the transaction makes every key bump once.
        with transaction.atomic(using=self.db, savepoint=False):
            result = super().delete()
            bumps.request(self._table_and_epoch()[:1], self.db)
        return result


class CachedCallManager(models.Manager.from_queryset(CachedCallQuerySet)):  # type: ignore[misc]
    """``objects = CachedCallManager()``: the default manager with bumping bulk writes."""
