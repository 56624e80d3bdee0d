"""Pure key building: bind a call to its signature, encode it by type, hash it.

Nothing here does I/O or touches the database: a model instance is keyed by its primary
key as already loaded, and a QuerySet is refused rather than evaluated.

Process state: the encoder resolved per argument type (``_EXACT`` grows by the types met),
reset to the builtin types by :func:`forget`, and the memo of primary-key and scope tokens
(``_token``, at most 4,096 each), which it clears.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import hashlib
import inspect
import re
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.utils.functional import Promise

from cachedcall.exceptions import UnkeyableArgument

__all__: list[str] = []

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
DIGEST_SIZE = 12


class _Unkeyable(Exception):
    """Raised deep inside the encoder; the caller adds the function and parameter."""

    def __init__(self, value: object, why: str) -> None:
        super().__init__(why)
        self.value = value
        self.why = why


def digest(data: str) -> str:
    """Return a short hex digest of ``data`` (96 bits: collisions are not a concern)."""
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=DIGEST_SIZE).hexdigest()


def safe_name(name: str, limit: int = 40) -> str:
    """Return ``name`` reduced to memcached-safe characters and at most ``limit`` long."""
    return _UNSAFE.sub("_", name)[:limit] or "_"


def pk_token(pk: object) -> str:
    """Return how a primary key appears in a row counter's key: ``#`` and a digest of it.

    A primary key can be a secret (an API token, a session key), and even a sequential id
    says how many rows there are: anyone who can list a cache's keys (memcached's
    ``lru_crawler metadump``, Redis's ``SCAN``) must not read it there. Memoized (the same
    rows are named on every call that depends on them); unhashable values are digested
    each time.
    """
    try:
        return _token(type(pk), pk)  # type: ignore[arg-type]  # unhashable: TypeError, below
    except TypeError:
        return "#" + digest(encode(pk))


@functools.lru_cache(maxsize=4096)
def _token(kind: Any, value: Any) -> str:
    # The type is part of the memo's key: lru_cache holds 1, 1.0 and True as one key.
    return "#" + digest(encode(value))


# --- typed encoding -------------------------------------------------------------------------
# Each value becomes a tagged, length-prefixed string, so no two different typed values
# (1, 1.0, True, "1", b"1", Decimal("1")) and no two tuples that differ only in where a
# delimiter falls ("a:b", "c") / ("a", "b:c") can encode alike.


def _str(v: str, out: list[str]) -> None:
    out.append(f"s{len(v)}:{v}")


def _int(v: int, out: list[str]) -> None:
    out.append(f"i{v};")


def _float(v: float, out: list[str]) -> None:
    # -0.0 == 0.0, so they key alike; repr() round-trips every other float exactly.
    out.append(f"f{(v + 0.0)!r};" if v else "f0.0;")


def _bool(v: bool, out: list[str]) -> None:
    out.append("T" if v else "F")


def _none(v: None, out: list[str]) -> None:
    out.append("N")


def _bytes(v: bytes, out: list[str]) -> None:
    out.append(f"b{len(v)}:{v.hex()}")


def _decimal(v: decimal.Decimal, out: list[str]) -> None:
    text = str(v.normalize()) if v.is_finite() else str(v)
    out.append(f"d{len(text)}:{text}")


def _uuid(v: uuid.UUID, out: list[str]) -> None:
    out.append(f"u{v.hex}")


def _datetime(v: datetime.datetime, out: list[str]) -> None:
    text = v.isoformat()
    out.append(f"M{len(text)}:{text}")


def _date(v: datetime.date, out: list[str]) -> None:
    out.append(f"D{v.isoformat()};")


def _time(v: datetime.time, out: list[str]) -> None:
    text = v.isoformat()
    out.append(f"t{len(text)}:{text}")


def _timedelta(v: datetime.timedelta, out: list[str]) -> None:
    out.append(f"R{v.days},{v.seconds},{v.microseconds};")


def _sequence(tag: str) -> Callable[[Any, list[str]], None]:
    def encode_items(v: Sequence[Any], out: list[str]) -> None:
        out.append(f"{tag}{len(v)}(")
        for item in v:
            _encode(item, out)
        out.append(")")

    return encode_items


def _unordered(tag: str) -> Callable[[Any, list[str]], None]:
    def encode_members(v: Any, out: list[str]) -> None:
        members = sorted(encode(item) for item in v)
        out.append(f"{tag}{len(members)}(")
        out.extend(f"{len(m)}:{m}" for m in members)
        out.append(")")

    return encode_members


def _dict(v: dict[Any, Any], out: list[str]) -> None:
    pairs = sorted((encode(k), encode(val)) for k, val in v.items())
    out.append(f"m{len(pairs)}(")
    for k, val in pairs:
        out.append(f"{len(k)}:{k}{len(val)}:{val}")
    out.append(")")


_EXACT: dict[type, Callable[[Any, list[str]], None]] = {
    str: _str,
    int: _int,
    float: _float,
    bool: _bool,
    type(None): _none,
    bytes: _bytes,
    decimal.Decimal: _decimal,
    uuid.UUID: _uuid,
    datetime.datetime: _datetime,
    datetime.date: _date,
    datetime.time: _time,
    datetime.timedelta: _timedelta,
    tuple: _sequence("("),
    list: _sequence("["),
    dict: _dict,
    set: _unordered("{"),
    frozenset: _unordered("z"),
}


_BUILTIN = dict(_EXACT)


def forget() -> None:
    """Forget the encoders resolved for other types than the builtin ones, and the tokens."""
    _EXACT.clear()
    _EXACT.update(_BUILTIN)
    _token.cache_clear()


def _encode(v: Any, out: list[str]) -> None:
    handler = _EXACT.get(type(v))
    if handler is not None:
        handler(v, out)
        return
    handler = _handler_for(type(v))
    if handler is not None:
        _EXACT[type(v)] = handler  # resolved once per type, not per call
        handler(v, out)
        return
    _encode_other(v, out)


def _handler_for(cls: type) -> Callable[[Any, list[str]], None] | None:
    """The handler for a type whose encoding depends on its type alone, if any."""
    if isinstance(cls, type) and cls is not type and getattr(cls, "__cache_key__", None) is None:
        meta = getattr(cls, "_meta", None)
        if meta is not None and _is_model_class(cls):
            return _model_instance
        if issubclass(cls, enum.Enum) or issubclass(cls, Promise):
            return None  # handled (cheaply enough) by _encode_other
    return None


def _model_instance(v: Any, out: list[str]) -> None:
    if v.pk is None:
        raise _Unkeyable(v, f"the {type(v).__name__} instance is not saved (its pk is None)")
    out.append(f"r{v._meta.concrete_model._meta.label_lower}(")
    _encode(v.pk, out)
    out.append(")")


def _is_model_class(cls: type) -> bool:
    from django.db import models

    return issubclass(cls, models.Model)


def _encode_other(v: Any, out: list[str]) -> None:
    cache_key = getattr(type(v), "__cache_key__", None)
    if cache_key is not None and not isinstance(v, type):
        cls = type(v)
        out.append(f"o{cls.__module__}.{cls.__qualname__}(")
        _encode(cache_key(v), out)
        out.append(")")
        return
    if isinstance(v, enum.Enum):
        cls = type(v)
        out.append(f"e{cls.__module__}.{cls.__qualname__}.{v.name};")
        return
    if isinstance(v, Promise):
        _str(str(v), out)
        return
    model_meta = getattr(v, "_meta", None)
    if model_meta is not None and _is_model(v):
        if isinstance(v, type):
            out.append(f"c{model_meta.concrete_model._meta.label_lower};")
            return
        if v.pk is None:
            raise _Unkeyable(v, f"the {type(v).__name__} instance is not saved (its pk is None)")
        out.append(f"r{model_meta.concrete_model._meta.label_lower}(")
        _encode(v.pk, out)
        out.append(")")
        return
    if _is_queryset(v):
        raise _Unkeyable(v, "a QuerySet cannot be keyed without running it; pass the values it filters on")
    if isinstance(v, type):
        out.append(f"k{v.__module__}.{v.__qualname__};")
        return
    # Subclasses of the plain types key apart from the plain type, by class and value: a
    # subclass may change what the value means (SafeString is HTML that is not escaped
    # again; mark_safe(s) and s must not share an entry). bool and Enum were handled above.
    for base in (str, int, float, bytes, tuple, list, dict, set, frozenset):
        if isinstance(v, base):
            cls = type(v)
            out.append(f"x{cls.__module__}.{cls.__qualname__}(")
            _EXACT[base](v, out)
            out.append(")")
            return
    raise _Unkeyable(v, f"values of type {type(v).__qualname__} have no stable cache key")


def _is_model(v: Any) -> bool:
    from django.db import models

    if isinstance(v, type):
        return issubclass(v, models.Model)
    return isinstance(v, models.Model)


def _is_queryset(v: Any) -> bool:
    from django.db.models.query import QuerySet

    return isinstance(v, QuerySet)


def encode(value: Any) -> str:
    """Return the typed, delimiter-safe encoding of one value."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


# --- binding ----------------------------------------------------------------------------------


class Binder:
    """Turns ``(args, kwargs)`` of a call into the tuple of its parameter values.

    For the common signature (positional-or-keyword parameters only) this avoids
    ``inspect.Signature.bind``, which costs several microseconds per call; every other
    signature goes through ``bind`` with defaults applied, so both give the same values.
    """

    def __init__(self, func: Callable[..., Any], selected: Sequence[str] | None, owner: str) -> None:
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        self.names = tuple(p.name for p in params)
        self.simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self.count = len(params)
        if selected is None:
            self.selected: tuple[int, ...] | None = None
        else:
            unknown = [n for n in selected if n not in self.names]
            if unknown:
                from cachedcall.exceptions import InvalidOption

                raise InvalidOption(
                    f"cached(key=...) on {owner}: {', '.join(map(repr, unknown))} "
                    f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'}; "
                    f"the parameters are {', '.join(self.names) or '(none)'}."
                )
            self.selected = tuple(self.names.index(n) for n in selected)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Return the parameter values; raise ``TypeError`` as a call would."""
        if self.simple:
            values = args if not kwargs and len(args) == self.count else self._bind_simple(args, kwargs)
        else:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = tuple(bound.arguments.values())
        if self.selected is not None:
            return tuple(values[i] for i in self.selected)
        return values

    def _bind_simple(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if len(args) > self.count:
            raise TypeError("too many positional arguments")
        values = list(args)
        missing = object()
        for name in self.names[len(args) :]:
            value = kwargs.get(name, missing)
            if value is missing:
                value = self.defaults.get(name, missing)
                if value is missing:
                    raise TypeError(f"missing a required argument: {name!r}")
            values.append(value)
        if (
            len(kwargs) > self.count - len(args)
            or any(name in kwargs for name in self.names[: len(args)])
            or not set(kwargs) <= set(self.names)
        ):
            # Duplicated or unknown keywords: let Signature.bind produce the real message.
            self.signature.bind(*args, **kwargs)
        return tuple(values)

    def parameter_names(self) -> tuple[str, ...]:
        if self.selected is None:
            return self.names
        return tuple(self.names[i] for i in self.selected)


def encode_call(values: tuple[Any, ...], names: tuple[str, ...], owner: str) -> str:
    """Encode bound parameter values, naming the parameter in any error."""
    out: list[str] = []
    try:
        for value in values:
            _encode(value, out)
    except _Unkeyable as exc:
        raise _named_error(values, names, owner, exc) from None
    return "".join(out)


def _named_error(
    values: tuple[Any, ...], names: tuple[str, ...], owner: str, exc: _Unkeyable
) -> UnkeyableArgument:
    # Find which parameter failed by encoding them one at a time (only on the error path).
    for name, value in zip(names, values, strict=True):
        try:
            encode(value)
        except _Unkeyable:
            return UnkeyableArgument(
                f"{owner}: cannot build a cache key from parameter {name!r}: {exc.why}. "
                f"Pass key=... to @cached to choose the key material (a callable or a list of "
                f"parameter names), or give the class a __cache_key__() method."
            )
    return UnkeyableArgument(f"{owner}: cannot build a cache key: {exc.why}.")  # pragma: no cover


def encode_material(material: Any, owner: str) -> str:
    """Encode what a ``key=`` callable returned."""
    try:
        return encode(material)
    except _Unkeyable as exc:
        raise UnkeyableArgument(
            f"{owner}: the key= callable returned a value that cannot be keyed: {exc.why}."
        ) from None
