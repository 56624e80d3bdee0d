"""The Django app: connects the version receivers and registers the system checks.

``'cachedcall'`` must be in ``INSTALLED_APPS`` of every process that writes to models a
cached function depends on, so that its writes bump versions.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.db.models import signals

__all__: list[str] = []


class CachedCallConfig(AppConfig):
    name = "cachedcall"
    verbose_name = "cachedcall"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from cachedcall import bumps
        from cachedcall import checks as our_checks

        signals.pre_save.connect(bumps.on_pre_save, dispatch_uid="cachedcall.pre_save")
        signals.post_save.connect(bumps.on_post_save, dispatch_uid="cachedcall.post_save")
        signals.post_delete.connect(bumps.on_post_delete, dispatch_uid="cachedcall.post_delete")
        signals.m2m_changed.connect(bumps.on_m2m_changed, dispatch_uid="cachedcall.m2m_changed")
        checks.register(our_checks.check_settings, checks.Tags.caches)
