"""``python manage.py cachedcall ...``: what the person on call needs.

settings   the CACHEDCALL settings in effect and the aliases they use
backends   whether each alias cachedcall uses answers, and how fast: backends [ALIAS ...]
stats      counts per decorated function and per alias, of every process (as flushed to the
           cache, :mod:`cachedcall.metrics`): stats [--json] [--local]
reset      make every cachedcall entry unreachable (no flush)
bump       mark a model (or one row) as changed: bump app_label.Model [--pk PK]

Exit status 2 and one line on stderr for a mistake in the command line (an unknown
subcommand or model, a pk its model cannot take, an alias that is not in CACHES, ...); 1 and
one line for a failure of what it operates on (a cache that does not answer, a database
error, broken settings).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from typing import NoReturn

from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand
from django.core.management.base import CommandError
from django.core.management.base import CommandParser
from django.db import DatabaseError
from django.db import models

from cachedcall import aliases
from cachedcall import bumps
from cachedcall import conf
from cachedcall import health
from cachedcall import metrics
from cachedcall.exceptions import InvalidDependency
from cachedcall.function import registry
from cachedcall.management.commands import _parsing


class Command(BaseCommand):
    help = "Inspect and operate cachedcall: settings, backends, stats, reset, bump."

    def add_arguments(self, parser: CommandParser) -> None:
        # Kept for the mistakes only handle() can see (a pk its model cannot take), so that
        # they are reported as the parser reports the others.
        self._parsers = _parsing.subcommands(
            _parsing.use(parser),
            "action",
            {
                "settings": "The CACHEDCALL settings in effect.",
                "backends": "Whether each cache alias cachedcall uses answers.",
                "stats": "Hits, misses, stored, errors, refused and stale calls per decorated function, "
                "and failures per alias, of every process.",
                "reset": "Make every cachedcall entry unreachable, without a flush.",
                "bump": "Mark a model, or one row of it, as changed.",
            },
        )
        self._parsers["backends"].add_argument(
            "aliases",
            nargs="*",
            type=_alias,
            metavar="ALIAS",
            help="probe these aliases of settings.CACHES (default: every alias cachedcall uses)",
        )
        stats = self._parsers["stats"]
        stats.add_argument("--json", action="store_true", help="print the counts as one JSON object")
        stats.add_argument(
            "--local",
            action="store_true",
            help="this process's counts only, not the sum every process flushed to the cache",
        )
        bump = self._parsers["bump"]
        bump.add_argument("model", type=_model, help="app_label.ModelName")
        bump.add_argument("--pk", help="bump this row (and its table) instead of the whole table")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"do_{options['action']}")(options)
        except ImproperlyConfigured as exc:
            # The system checks report these first, unless they were skipped (--skip-checks,
            # call_command): a setting is wrong, not the command line.
            raise CommandError(_parsing.one_line(str(exc))) from None

    def _mistake(self, action: str, message: str) -> NoReturn:
        """Report a mistake in the command line that only handle() could see."""
        self._parsers[action].error(message)

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
            (
                "METRICS_INTERVAL",
                "(off: counts stay in each process)"
                if current.metrics_interval is None
                else f"{current.metrics_interval:g} s, into {metrics.alias_of(current)!r}",
            ),
        ]
        for name, value in rows:
            self.stdout.write(f"{name:<15} {value}")

    def do_backends(self, options: dict[str, Any]) -> None:
        failing = 0
        names = options["aliases"] or self._aliases()
        for alias in names:
            try:
                cache = aliases.lookup(alias)
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
            used = "named" if options["aliases"] else "used by cachedcall"
            raise CommandError(f"{failing} of the {len(names)} cache alias(es) {used} do not answer.")

    def do_stats(self, options: dict[str, Any]) -> None:
        current = conf.get()
        alias = metrics.alias_of(current)
        everywhere = not options["local"] and current.metrics_interval is not None
        if everywhere:
            metrics.flush()  # this process's own counts first (nothing, usually)
            counts = metrics.read()
            if counts is None:
                raise CommandError(
                    f"The counts could not be read from the cache alias {alias!r}; see the log of "
                    "logger 'cachedcall'. 'cachedcall stats --local' shows this process's."
                )
            scope = f"every process, as flushed to the cache alias {alias!r}"
        else:
            counts = metrics.local()
            scope = "this process"
        snapshot = health.stats()
        report = {
            "scope": "every process" if everywhere else "this process",
            "alias": alias if everywhere else None,
            "interval": current.metrics_interval,
            "functions": {
                name: {**counted, "hit_ratio": metrics.hit_ratio(counted)}
                for name, counted in sorted(counts.functions.items())
            },
            "health": counts.health,
            "down": snapshot["down"],
            "bumps_waiting": bumps.dirty_keys() if bumps.is_dirty() else [],
        }
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
            return
        if current.metrics_interval is None and not options["local"]:
            self.stdout.write("CACHEDCALL['METRICS_INTERVAL'] is off: each process keeps its own counts.")
        if everywhere:
            self.stdout.write(f"Counts of {scope} (every {current.metrics_interval:g} s and at exit):")
        else:
            self.stdout.write("Counts of this process:")
        self._function_table(report["functions"])
        self._health_table(counts.health)
        self.stdout.write(f"down now, in this process: {', '.join(report['down']) or 'none'}")
        if report["bumps_waiting"]:
            self.stdout.write(f"bumps waiting for a retry: {', '.join(report['bumps_waiting'])}")

    def _function_table(self, functions: dict[str, dict[str, Any]]) -> None:
        width = max([len("function"), *map(len, functions)]) + 2
        self.stdout.write(
            f"{'function':<{width}}" + "".join(f"{o:>9}" for o in metrics.OUTCOMES) + "  hit ratio"
        )
        for name, counted in functions.items():
            ratio = counted["hit_ratio"]
            shown = "-" if ratio is None else f"{ratio:.1%}"
            cells = "".join(f"{counted[o]:>9}" for o in metrics.OUTCOMES)
            self.stdout.write(f"{name:<{width}}{cells}{shown:>11}")
        if not functions:
            self.stdout.write("(no decorated function has counted anything yet)")

    def _health_table(self, counted: dict[str, dict[str, int]]) -> None:
        kinds = [kind for kind in metrics.HEALTH if kind != "bypassed"]
        names = sorted({alias for kind in kinds for alias in counted[kind]})
        width = max([len("alias"), *map(len, names)]) + 2
        if not names:
            self.stdout.write("cache aliases: no error, refusal or corrupt entry counted")
        else:
            heads = "".join(f"{kind.replace('_', ' '):>16}" for kind in kinds)
            self.stdout.write(f"{'alias':<{width}}{heads}")
        for alias in names:
            cells = "".join(f"{counted[kind].get(alias, 0):>16}" for kind in kinds)
            self.stdout.write(f"{alias:<{width}}{cells}")
        bypassed = ", ".join(f"{reason} {n}" for reason, n in sorted(counted["bypassed"].items()))
        self.stdout.write(f"calls that bypassed the cache for a bump: {bypassed or 'none'}")

    def do_reset(self, options: dict[str, Any]) -> None:
        bumps.reset()
        if bumps.is_dirty():
            raise CommandError("The reset could not reach the cache; see the log of logger 'cachedcall'.")
        self.stdout.write("Every cachedcall entry is now unreachable (global generation bumped).")

    def do_bump(self, options: dict[str, Any]) -> None:
        model: type[models.Model] = options["model"]
        item: Any = model
        if options["pk"] is not None:
            item = self._row(model, options["pk"])
        try:
            bumps.bump(item)
        except InvalidDependency as exc:  # e.g. a model in CACHEDCALL["IGNORE_MODELS"]
            self._mistake("bump", str(exc))
        if bumps.is_dirty():
            raise CommandError("The bump could not reach the cache; it will be retried by readers.")
        what = (
            f"row pk={options['pk']} of {model._meta.label}"
            if options["pk"] is not None
            else model._meta.label
        )
        self.stdout.write(f"Bumped {what}.")

    def _row(self, model: type[models.Model], raw: str) -> models.Model:
        """The row of ``model`` whose pk is ``raw`` as typed, or an unsaved stand-in for it
        when it was deleted (bumping a deleted row's version is what its readers need)."""
        field = model._meta.pk
        assert field is not None
        try:
            pk = field.to_python(raw)
            field.run_validators(pk)
        except ValidationError as exc:
            self._mistake(
                "bump", f"argument --pk: {raw!r} is not a pk of {model._meta.label}: {' '.join(exc.messages)}"
            )
        try:
            row: models.Model = model._base_manager.get(pk=pk)
        except ObjectDoesNotExist:
            return model(pk=pk)
        except OverflowError as exc:
            # Django >= 5.0 finds no row for an integer out of the column's range; 4.2 on
            # SQLite hands it to the driver, which cannot convert it.
            self._mistake("bump", f"argument --pk: {raw!r} is not a pk of {model._meta.label}: {exc}")
        except DatabaseError as exc:
            raise CommandError(
                _parsing.one_line(f"Reading {model._meta.label} pk={raw}: {type(exc).__name__}: {exc}")
            ) from None
        return row

    def _aliases(self) -> list[str]:
        current = conf.get()
        used = {current.cache, *current.counter_aliases}
        used.update(fc.cache_option for fc in list(registry) if fc.cache_option)
        return sorted(used)


def _model(label: str) -> type[models.Model]:
    """The installed model an ``app_label.ModelName`` argument names (argparse ``type=``)."""
    from django.apps import apps

    app_label, dot, name = label.partition(".")
    if not (app_label and dot and name) or "." in name:
        example = next((m._meta.label for m in apps.get_models()), "app_label.ModelName")
        raise argparse.ArgumentTypeError(f"{label!r} is not an app_label.ModelName label, such as {example}")
    try:
        app = apps.get_app_config(app_label)
    except LookupError:
        labels = ", ".join(sorted(a.label for a in apps.get_app_configs()))
        raise argparse.ArgumentTypeError(
            f"{label!r}: no installed app has the label {app_label!r}; installed: {labels}"
        ) from None
    try:
        return app.get_model(name)
    except LookupError:
        names = ", ".join(sorted(m.__name__ for m in app.get_models())) or "none"
        raise argparse.ArgumentTypeError(
            f"{label!r}: the app {app_label!r} has no model {name!r}; its models: {names}"
        ) from None


def _alias(name: str) -> str:
    """A cache alias argument: one of ``settings.CACHES`` (argparse ``type=``)."""
    from django.conf import settings

    known = sorted(getattr(settings, "CACHES", {}) or {})
    if name not in known:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not an alias of settings.CACHES; its aliases: {', '.join(known) or 'none'}"
        )
    return name
