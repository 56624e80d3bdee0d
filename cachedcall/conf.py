"""The ``CACHEDCALL`` setting, read lazily into one frozen dataclass.

Importing this module never touches ``django.conf.settings``: the first call of
:func:`get` does, and a ``setting_changed`` signal (``override_settings``) throws the
result away so the next call reads it again.

Process state: the settings read (``_current``, dropped by :func:`forget`) and the key
prefix suffix of a test run (``_namespace_suffix``, set once per process by the pytest
plugin or the test runner, also exported as ``CACHEDCALL_NAMESPACE`` to the processes it
starts, and kept by :func:`forget`: it is configuration, like the settings module).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

__all__: list[str] = []

SAFE_KEY_PART = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
_KNOWN = frozenset(
    {
        "ENABLED",
        "CACHE",
        "TIMEOUT",
        "KEY_PREFIX",
        "VERSIONS_CACHE",
        "SCOPES",
        "IGNORE_MODELS",
        "SIGN",
        "LOCK",
        "REPLICA_LAG",
        "SNAPSHOT_DATABASES",
        "METRICS_INTERVAL",
        "NEAR",
        "NEAR_BYTES",
    }
)
# Tables written on nearly every request, which no cached function sensibly depends on:
# bumping their versions would cost a cache round trip per request for nothing.
DEFAULT_IGNORED = ("sessions.session", "admin.logentry", "migrations.migration")


@dataclass(frozen=True)
class Settings:
    """The effective ``CACHEDCALL`` settings of this process."""

    enabled: bool = True
    cache: str = "default"
    #: ``MISSING`` when unset: the alias's own default timeout applies.
    timeout: Any = None
    timeout_set: bool = False
    key_prefix: str = "cc"
    versions_cache: str | None = None
    scopes: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    ignore_models: frozenset[str] = frozenset(DEFAULT_IGNORED)
    #: Entries carry an HMAC checked before anything read is unpickled.
    sign: bool = False
    #: The default of ``cached(lock=...)``: one computation per key across processes.
    lock: bool = False
    #: Seconds a read replica may lag its primary: every bump repeats after that delay, so
    #: an entry computed from a replica that had not caught up yet goes stale too.
    replica_lag: float = 0.0
    #: Database aliases whose transactions read a snapshot though their ``OPTIONS`` do not
    #: say so (see :mod:`cachedcall.snapshots`).
    snapshot_databases: frozenset[str] = frozenset()
    #: Seconds between two flushes of this process's counts into the cache, where
    #: ``manage.py cachedcall stats`` adds up every process's (:mod:`cachedcall.metrics`);
    #: ``None`` (set as ``0`` or ``None``) keeps the counts in this process only.
    metrics_interval: float | None = 10.0
    #: The default of ``cached(near=...)``: keep hot entries in process memory too.
    near: bool = False
    #: The bytes the near tier may keep in this process (``0``: the tier is off).
    near_bytes: int = 64 * 1024 * 1024

    #: Every alias that holds version counters, so every alias a bump reaches: the
    #: ``VERSIONS_CACHE`` alone when it is set; else each alias of ``settings.CACHES``
    #: (counters live beside the entries of each alias, so a hit stays one round trip, and a
    #: writer that never imported a function still reaches the alias it uses).
    counter_aliases: tuple[str, ...] = ("default",)

    def counters_for(self, alias: str) -> str:
        """The alias that holds the counters of entries stored in ``alias``."""
        return self.versions_cache or alias


_current: Settings | None = None
_namespace_suffix = ""


#: Set by the test runners for the processes a test run starts (a writer subprocess, a server
#: in another process), so that they share the run's namespace.
NAMESPACE_VARIABLE = "CACHEDCALL_NAMESPACE"


def set_namespace_suffix(suffix: str) -> None:
    """Append ``.suffix`` to the key prefix of this process: test runs have a namespace of
    their own (``test``, ``test.gw0`` per pytest-xdist worker)."""
    global _current, _namespace_suffix
    if not SAFE_KEY_PART.match(suffix):
        raise ValueError(f"namespace suffix {suffix!r} is not key-safe")
    _namespace_suffix = suffix
    os.environ[NAMESPACE_VARIABLE] = suffix  # inherited by the processes this one starts
    _current = None


def get() -> Settings:
    """Return the effective settings, reading them on first use."""
    current = _current
    if current is None:
        current = _load()
    return current


def metrics_interval() -> float | None:
    """``CACHEDCALL["METRICS_INTERVAL"]`` in effect, without reading the other settings in.

    For the metrics thread, which starts with the app: had it read every setting then, a
    process that sets ``settings.CACHES`` after ``django.setup()`` would keep the aliases of
    before. A broken value reads as the default: the system checks and the next call say why.
    """
    current = _current
    if current is not None:
        return current.metrics_interval
    from django.conf import settings

    raw = getattr(settings, "CACHEDCALL", None)
    try:
        if isinstance(raw, dict) and "METRICS_INTERVAL" in raw:
            return _interval(raw["METRICS_INTERVAL"])
    except ImproperlyConfigured:
        pass
    return Settings.metrics_interval


def _load() -> Settings:
    global _current
    from django.conf import settings

    raw = getattr(settings, "CACHEDCALL", None)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"settings.CACHEDCALL must be a dict, not {type(raw).__name__}.")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.CACHEDCALL has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys are {', '.join(sorted(_KNOWN))}."
        )
    kwargs: dict[str, Any] = {}
    if "ENABLED" in raw:
        kwargs["enabled"] = _bool("ENABLED", raw["ENABLED"])
    else:
        kwargs["enabled"] = _env_enabled()
    for name in ("SIGN", "LOCK", "NEAR"):
        if name in raw:
            kwargs[name.lower()] = _bool(name, raw[name])
    if "CACHE" in raw:
        kwargs["cache"] = _alias("CACHE", raw["CACHE"])
    if "VERSIONS_CACHE" in raw and raw["VERSIONS_CACHE"] is not None:
        kwargs["versions_cache"] = _alias("VERSIONS_CACHE", raw["VERSIONS_CACHE"])
    if "TIMEOUT" in raw:
        kwargs["timeout"] = check_timeout(
            raw["TIMEOUT"], "settings.CACHEDCALL['TIMEOUT']", ImproperlyConfigured
        )
        kwargs["timeout_set"] = True
    if "KEY_PREFIX" in raw:
        prefix = raw["KEY_PREFIX"]
        if not isinstance(prefix, str) or not SAFE_KEY_PART.match(prefix):
            raise ImproperlyConfigured(
                "settings.CACHEDCALL['KEY_PREFIX'] must be 1-32 characters of letters, digits, "
                f"'_', '.' or '-'; got {prefix!r}."
            )
        kwargs["key_prefix"] = prefix
    if "SCOPES" in raw:
        kwargs["scopes"] = _scopes(raw["SCOPES"])
    if "IGNORE_MODELS" in raw:
        models = raw["IGNORE_MODELS"]
        if isinstance(models, str) or not all(isinstance(m, str) and "." in m for m in models):
            raise ImproperlyConfigured(
                "settings.CACHEDCALL['IGNORE_MODELS'] must be a list of 'app_label.ModelName' "
                f"strings; got {models!r}."
            )
        kwargs["ignore_models"] = frozenset(m.lower() for m in models)
    if "REPLICA_LAG" in raw:
        lag = raw["REPLICA_LAG"]
        if isinstance(lag, datetime.timedelta):
            lag = lag.total_seconds()
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not 0 <= lag <= 60:
            raise ImproperlyConfigured(
                "settings.CACHEDCALL['REPLICA_LAG'] must be the replicas' maximum lag in seconds, "
                f"a number from 0 to 60 (or a timedelta); got {raw['REPLICA_LAG']!r}."
            )
        kwargs["replica_lag"] = float(lag)
    if "SNAPSHOT_DATABASES" in raw:
        aliases = raw["SNAPSHOT_DATABASES"]
        if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
            raise ImproperlyConfigured(
                "settings.CACHEDCALL['SNAPSHOT_DATABASES'] must be a list of aliases of "
                f"settings.DATABASES; got {aliases!r}."
            )
        kwargs["snapshot_databases"] = frozenset(aliases)
    if "NEAR_BYTES" in raw:
        size = raw["NEAR_BYTES"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ImproperlyConfigured(
                "settings.CACHEDCALL['NEAR_BYTES'] must be the bytes the near tier may keep per "
                f"process, an int >= 0 (0 turns it off); got {size!r}."
            )
        kwargs["near_bytes"] = size
    if "METRICS_INTERVAL" in raw:
        kwargs["metrics_interval"] = _interval(raw["METRICS_INTERVAL"])
    suffix = _namespace_suffix or os.environ.get(NAMESPACE_VARIABLE, "")
    if suffix:
        if not SAFE_KEY_PART.match(suffix):
            raise ImproperlyConfigured(
                f"The environment variable {NAMESPACE_VARIABLE}={suffix!r} is not key-safe."
            )
        kwargs["key_prefix"] = f"{kwargs.get('key_prefix', 'cc')}.{suffix}"
    if "versions_cache" in kwargs:
        kwargs["counter_aliases"] = (kwargs["versions_cache"],)
    else:
        kwargs["counter_aliases"] = _entry_aliases(getattr(settings, "CACHES", None) or {})
    _current = Settings(**kwargs)
    return _current


_DUMMY = "django.core.cache.backends.dummy.DummyCache"


def _entry_aliases(caches: dict[str, Any]) -> tuple[str, ...]:
    # A DummyCache stores nothing: no entry there to invalidate.
    return tuple(sorted(alias for alias, config in caches.items() if config.get("BACKEND") != _DUMMY))


def _env_enabled() -> bool:
    value = os.environ.get("CACHEDCALL_ENABLED")
    if value is None or value == "":
        return True
    lowered = value.strip().lower()
    if lowered in ("0", "false", "no", "off"):
        return False
    if lowered in ("1", "true", "yes", "on"):
        return True
    raise ImproperlyConfigured(f"The environment variable CACHEDCALL_ENABLED must be 0 or 1, not {value!r}.")


def _interval(value: object) -> float | None:
    # 0 and None both switch the flushes off: "never" has no other sensible spelling here.
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    if seconds is None or (
        isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds == 0
    ):
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < 86400:
        raise ImproperlyConfigured(
            "settings.CACHEDCALL['METRICS_INTERVAL'] must be the seconds between two flushes of "
            "this process's counts, a number above 0 and below 86400 (or a timedelta), or 0 / "
            f"None to keep them in this process only; got {value!r}."
        )
    return float(seconds)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"settings.CACHEDCALL[{name!r}] must be True or False, not {value!r}.")
    return value


def _alias(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(
            f"settings.CACHEDCALL[{name!r}] must name an alias of settings.CACHES, not {value!r}."
        )
    return value


def _scopes(value: object) -> dict[str, tuple[tuple[str, ...], ...]]:
    problem = (
        "settings.CACHEDCALL['SCOPES'] must map 'app_label.ModelName' to a list of field-name "
        "tuples, e.g. {'club.ClubClass': [('club', 'weekday')]}"
    )
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{problem}; got {value!r}.")
    out: dict[str, tuple[tuple[str, ...], ...]] = {}
    for label, shapes in value.items():
        if not isinstance(label, str) or "." not in label or isinstance(shapes, str):
            raise ImproperlyConfigured(f"{problem}; got {label!r}: {shapes!r}.")
        normalized = []
        for shape in shapes:
            if isinstance(shape, str):
                shape = (shape,)
            if not shape or not all(isinstance(f, str) for f in shape):
                raise ImproperlyConfigured(f"{problem}; got {label!r}: {shapes!r}.")
            normalized.append(tuple(shape))
        out[label.lower()] = tuple(normalized)
    return out


def check_timeout(value: object, where: str, error: type[Exception]) -> float | int | None:
    """Validate a timeout the way Django reads one and return it in seconds.

    :param value: ``None`` (never expire), a number ``>= 0`` or a ``timedelta``.
    :param where: how to name the option in the message.
    :param error: the exception class to raise.
    """
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(
            f"{where}: timeout must be None, a number of seconds >= 0 or a timedelta, "
            f"not {value!r} ({type(value).__name__})."
        )
    if value < 0 or value != value:
        raise error(
            f"{where}: timeout must be None or a number >= 0, not {value!r}; use None to "
            "never expire and 0 to not store."
        )
    return value


def forget() -> None:
    """Drop the settings read, so the next call reads them again."""
    global _current
    _current = None


def _reset(*, setting: str, **kwargs: object) -> None:
    global _current
    if setting in ("CACHEDCALL", "CACHES"):
        _current = None


setting_changed.connect(_reset, dispatch_uid="cachedcall.conf.reset")
