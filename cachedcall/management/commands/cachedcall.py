"""``python manage.py cachedcall ...``: what the person on call needs.

settings   the CACHEDCALL settings in effect and the aliases they use
backends   whether each alias cachedcall uses answers, and how fast
stats      hits, misses and errors per decorated function, in this process
reset      make every cachedcall entry unreachable (no flush)
bump       mark a model (or one row) as changed: bump app_label.Model [--pk PK]
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand
from django.core.management.base import CommandError
from django.core.management.base import CommandParser

from cachedcall import backend
from cachedcall import bumps
from cachedcall import conf
from cachedcall import health
from cachedcall.exceptions import InvalidDependency
from cachedcall.function import registry


class Command(BaseCommand):
    help = "Inspect and operate cachedcall: settings, backends, stats, reset, bump."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("settings", help="The CACHEDCALL settings in effect.")
        sub.add_parser("backends", help="Whether each cache alias cachedcall uses answers.")
        sub.add_parser("stats", help="Hits, misses and errors per decorated function in this process.")
        sub.add_parser("reset", help="Make every cachedcall entry unreachable, without a flush.")
        bump = sub.add_parser("bump", help="Mark a model, or one row of it, as changed.")
        bump.add_argument("model", help="app_label.ModelName")
        bump.add_argument("--pk", help="bump this row (and its table) instead of the whole table")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def do_settings(self, options: dict[str, Any]) -> None:
        current = conf.get()
        rows = [
            ("ENABLED", current.enabled),
            ("CACHE", current.cache),
            ("VERSIONS_CACHE", current.versions_cache or f"(CACHE: {current.cache})"),
            ("TIMEOUT", current.timeout if current.timeout_set else "(each alias's own)"),
            ("KEY_PREFIX", current.key_prefix),
            ("SCOPES", dict(current.scopes) or "(foreign keys only)"),
            ("IGNORE_MODELS", ", ".join(sorted(current.ignore_models))),
        ]
        for name, value in rows:
            self.stdout.write(f"{name:<15} {value}")

    def do_backends(self, options: dict[str, Any]) -> None:
        failing = 0
        for alias in self._aliases():
            try:
                cache = backend.lookup(alias)
            except Exception as exc:
                self.stdout.write(f"{alias:<15} MISSING  {exc}")
                failing += 1
                continue
            key = f"{conf.get().key_prefix}:probe:{time.monotonic_ns()}"
            started = time.perf_counter()
            try:
                cache.set(key, 1, 10)
                answered = cache.get(key) == 1
                cache.delete(key)
            except Exception as exc:
                self.stdout.write(f"{alias:<15} DOWN     {type(cache).__name__}: {type(exc).__name__}: {exc}")
                failing += 1
                continue
            took = (time.perf_counter() - started) * 1000
            state = "ok" if answered else "NO READ"
            failing += not answered
            self.stdout.write(f"{alias:<15} {state:<8} {type(cache).__name__}, set+get+delete {took:.1f} ms")
        if failing:
            raise CommandError(f"{failing} cache alias(es) used by cachedcall do not answer.")

    def do_stats(self, options: dict[str, Any]) -> None:
        self.stdout.write(f"{'function':<60}{'hits':>8}{'misses':>8}{'errors':>8}")
        for fc in sorted(registry, key=lambda c: c.name):
            self.stdout.write(f"{fc.name:<60}{fc.hits:>8}{fc.misses:>8}{fc.errors:>8}")
        snapshot = health.stats()
        self.stdout.write(
            f"backend errors: {snapshot['errors'] or 'none'}; down now: {snapshot['down'] or 'none'}"
        )
        for name in ("bad_signatures", "corrupt", "too_large", "bump_failures"):
            self.stdout.write(f"{name.replace('_', ' ')}: {snapshot[name] or 'none'}")
        if bumps.is_dirty():
            self.stdout.write(f"bumps waiting for a retry: {', '.join(bumps.dirty_keys())}")

    def do_reset(self, options: dict[str, Any]) -> None:
        bumps.reset()
        if bumps.is_dirty():
            raise CommandError("The reset could not reach the cache; see the log of logger 'cachedcall'.")
        self.stdout.write("Every cachedcall entry is now unreachable (global generation bumped).")

    def do_bump(self, options: dict[str, Any]) -> None:
        from django.apps import apps

        try:
            model = apps.get_model(options["model"])
        except (LookupError, ValueError) as exc:
            raise CommandError(f"{options['model']!r} names no installed model ({exc}).") from None
        item: Any = model
        if options["pk"] is not None:
            try:
                item = model._base_manager.get(pk=options["pk"])
            except model.DoesNotExist:
                item = model(pk=model._meta.pk.to_python(options["pk"]))  # a deleted row still bumps
        try:
            bumps.bump(item)
        except InvalidDependency as exc:
            raise CommandError(str(exc)) from None
        if bumps.is_dirty():
            raise CommandError("The bump could not reach the cache; it will be retried by readers.")
        what = (
            f"row pk={options['pk']} of {model._meta.label}"
            if options["pk"] is not None
            else model._meta.label
        )
        self.stdout.write(f"Bumped {what}.")

    def _aliases(self) -> list[str]:
        current = conf.get()
        aliases = {current.cache, *current.counter_aliases}
        aliases.update(fc.cache_option for fc in list(registry) if fc.cache_option)
        return sorted(aliases)
