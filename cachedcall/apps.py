"""The Django app: connects the version receivers and registers the system checks.

``'cachedcall'`` must be in ``INSTALLED_APPS`` of every process that writes to models a
cached function depends on, so that its writes bump versions.

Process state: none of its own; :meth:`CachedCallConfig.ready` connects the receivers of
:mod:`cachedcall.receivers` to Django's model signals (with ``dispatch_uid``, so twice is once)
and starts the thread that flushes this process's counts (:mod:`cachedcall.metrics`).
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
        from cachedcall import checks as our_checks
        from cachedcall import metrics
        from cachedcall import receivers

        signals.pre_save.connect(receivers.on_pre_save, dispatch_uid="cachedcall.pre_save")
        signals.post_save.connect(receivers.on_post_save, dispatch_uid="cachedcall.post_save")
        signals.post_delete.connect(receivers.on_post_delete, dispatch_uid="cachedcall.post_delete")
        signals.m2m_changed.connect(receivers.on_m2m_changed, dispatch_uid="cachedcall.m2m_changed")
        checks.register(our_checks.check_settings, checks.Tags.caches)
        # Here rather than on a call: the hit path stays an int increment, and a process
        # that only ever hits (a warm cache) flushes too. It reads no settings until it wakes.
        metrics.start()
