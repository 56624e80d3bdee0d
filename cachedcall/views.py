"""``@cached_view``: whole responses, keyed by everything they may depend on.

A view decorator sees the response before any middleware adds ``Vary`` or cookies, so the
rules here are conservative: the key covers the request's method, scheme, validated host,
path, canonical query string, URL arguments, active language, the headers responses have
varied on, and the user when asked; and anything that could be private is never stored.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import ParamSpec
from typing import TypeVar
from typing import overload

from django.http import HttpResponse
from django.utils import translation

from cachedcall import options
from cachedcall.decorators import CachedFunction
from cachedcall.entry import Entry
from cachedcall.exceptions import InvalidOption
from cachedcall.function import FunctionCache

if TYPE_CHECKING:
    from cachedcall.protocols import Cached

__all__ = ["cached_view"]

P = ParamSpec("P")
R = TypeVar("R")
_PRIVATE = ("private", "no-store", "no-cache")
_VIEW_ONLY = ("vary_on", "per_user", "statuses")


class ViewPolicy:
    """What makes a cached function a cached view: the request is the key, the response
    the value, and what could be private is never read or stored."""

    want_entry = True

    def __init__(self, given: dict[str, Any], owner: str) -> None:
        resolved = options.resolve("cached_view", owner, given, _VIEW_ONLY)
        #: Request headers keyed on: ``vary_on`` plus those learned from responses' Vary.
        self.learned: frozenset[str] = resolved["vary_on"]
        self.per_user: bool = resolved["per_user"]
        self.statuses: frozenset[int] = resolved["statuses"]

    # -- the key --------------------------------------------------------------------------

    def key(self, request: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        headers = request.headers
        varied = tuple((name, headers.get(name)) for name in sorted(self.learned))
        query = tuple(sorted((k, tuple(v)) for k, v in request.GET.lists()))
        material: tuple[Any, ...] = (
            "GET",  # GET and HEAD share an entry; no other method reaches here
            request.scheme,
            request.get_host(),
            request.path,
            query,
            args,
            kwargs,
            translation.get_language(),
            varied,
        )
        if self.per_user:
            user = _user(request)
            if user is not None and _authenticated(request, user):
                material += ("user", user.pk, user.get_session_auth_hash())
            else:
                material += ("anonymous",)
        return material

    async def aresolve(self, args: tuple[Any, ...]) -> None:
        """Resolve the user off the event loop before the sync rules look at it.

        ``request.user`` is lazy: evaluating it loads the session and the user from the
        database, which Django forbids inside the event loop. ``request.auser()`` (Django
        5.0+) loads them asynchronously; on Django 4.2 the lazy user is evaluated in a
        worker thread. Either way the session's ``accessed`` flag is restored: that access
        is ours, not the view's.
        """
        request = args[0] if args else None
        if request is None or getattr(request, "method", None) not in ("GET", "HEAD"):
            return
        if "HTTP_AUTHORIZATION" in request.META or not hasattr(request, "user"):
            return
        session = getattr(request, "session", None)
        accessed = getattr(session, "accessed", None)
        try:
            auser = getattr(request, "auser", None)
            if auser is not None:
                user = await auser()
            else:
                from asgiref.sync import sync_to_async

                user = await sync_to_async(_evaluated)(request)
        finally:
            if session is not None and accessed is not None:
                session.accessed = accessed
        request.__dict__[_RESOLVED] = user

    # -- what is never read ---------------------------------------------------------------

    def bypass(self, full: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        request = full[0] if full else None
        method = getattr(request, "method", None)
        if method not in ("GET", "HEAD"):
            return f"method {method}"
        if "HTTP_AUTHORIZATION" in request.META:  # type: ignore[union-attr]
            return "request carries Authorization"
        if not self.per_user:
            user = request.__dict__.get(_RESOLVED)
            if user is None:
                user = getattr(request, "user", None)
            if user is not None and _authenticated(request, user):
                return "authenticated user (use per_user=True to cache per user)"
        return None

    # -- what is never stored -------------------------------------------------------------

    def store(
        self, fc: FunctionCache, response: Any, full: tuple[Any, ...], kwargs: dict[str, Any], key: str
    ) -> tuple[str, Any] | str:
        request = full[0]
        if request.method != "GET":
            return "HEAD response (only GET responses are stored)"
        if getattr(response, "streaming", False):
            return "streaming response"
        render = getattr(response, "render", None)
        if callable(render) and not getattr(response, "is_rendered", True):
            render()
        if response.status_code not in self.statuses:
            return f"status {response.status_code}"
        if response.cookies:
            return f"response sets cookies ({', '.join(sorted(response.cookies))})"
        if request.META.get("CSRF_COOKIE_NEEDS_UPDATE") or request.META.get("CSRF_COOKIE_USED"):
            return "response uses the CSRF token (the middleware will set its cookie)"
        directives = {
            d.split("=", 1)[0].strip().lower() for d in response.get("Cache-Control", "").split(",")
        }
        for directive in _PRIVATE:
            if directive in directives:
                return f"Cache-Control: {directive}"
        vary = {v.strip().lower() for v in response.get("Vary", "").split(",") if v.strip()}
        if "*" in vary:
            return "Vary: *"
        session = getattr(request, "session", None)
        if session is not None and getattr(session, "modified", False):
            # SessionMiddleware saves the session and sets its cookie after us: a stored
            # copy would reach other visitors without it, and their own writes would never
            # happen.
            return "the view wrote the session"
        if session is not None and getattr(session, "accessed", False):
            vary.add("cookie")  # SessionMiddleware will add Vary: Cookie after us
        if not vary <= self.learned:
            # Learn the new headers (as Django's cache learns Vary) and store under a key
            # that includes their values, so this response only reaches requests that match.
            self.learned = self.learned | vary
            key = fc.entry_key(full, kwargs)
        stored = (
            response.status_code,
            response.reason_phrase,
            list(response.headers.items()),
            response.content,
            response.charset,
        )
        return key, stored

    # -- serving a hit --------------------------------------------------------------------

    @staticmethod
    def serve(value: Any, stored: Entry | None, args: tuple[Any, ...]) -> HttpResponse:
        status, reason, headers, content, charset = value
        head = args[0].method == "HEAD" if args else False
        # A HEAD request is answered from GET's entry, without its body (and with its
        # Content-Length), also when nothing between the view and the client strips it.
        response = HttpResponse(b"" if head else content, status=status, reason=reason)
        for name in list(response.headers):
            del response.headers[name]
        for name, value in headers:
            response.headers[name] = value
        response.charset = charset
        if head and "Content-Length" not in response.headers:
            response.headers["Content-Length"] = str(len(content))  # what GET would send
        if stored is not None:
            response.headers["Age"] = str(max(0, int(time.time() - stored.created)))
        return response


_RESOLVED = "_cachedcall_user"


def _user(request: Any) -> Any:
    """The request's user: the one resolved by :meth:`ViewPolicy.aresolve` on the async path,
    else the (lazy) ``request.user``."""
    resolved = request.__dict__.get(_RESOLVED)
    return resolved if resolved is not None else getattr(request, "user", None)


def _evaluated(request: Any) -> Any:
    # In a worker thread (Django 4.2 has no request.auser()): force the lazy user, whose
    # database reads are allowed here, and return it.
    user = request.user
    bool(user.is_authenticated)
    return user


def _authenticated(request: Any, user: Any) -> bool:
    if user is None:
        return False
    # Looking at the user loads the session; that is our access, not the view's, so it must
    # not count as the response depending on the session.
    session = getattr(request, "session", None)
    accessed = getattr(session, "accessed", None)
    try:
        return bool(user.is_authenticated)
    finally:
        if session is not None and accessed is not None:
            session.accessed = accessed


class _Reuse:
    """Keeps one FunctionCache per decorated view across ``method_decorator``'s per-call
    decoration."""

    def __init__(self, given: dict[str, Any]) -> None:
        self.given = given
        self.caches: dict[str, FunctionCache] = {}

    def __call__(self, view: Any) -> Any:
        if isinstance(view, type):
            raise InvalidOption(
                f"@cached_view decorates view functions; for {view.__name__} decorate "
                f"{view.__name__}.as_view() or use method_decorator(cached_view(...), name='get')."
            )
        name = f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', repr(view))}"
        fc = self.caches.get(name)
        if fc is None:
            given = dict(self.given)
            policy = ViewPolicy({k: given[k] for k in _VIEW_ONLY if k in given}, name)
            fc = self.caches[name] = FunctionCache(view, given, "function", "cached_view", policy)
        return CachedFunction(view, fc)


@overload
def cached_view(view: Callable[P, R], /) -> Cached[P, R]: ...


@overload
def cached_view(
    timeout: float | datetime.timedelta | None = ...,
    *,
    cache: str | None = ...,
    prefix: str = ...,
    version: int | str = ...,
    depends_on: Sequence[Any] | Callable[..., Sequence[Any]] | None = ...,
    vary_on: Iterable[str] = ...,
    per_user: bool = ...,
    statuses: Iterable[int] = ...,
    single_flight: bool = ...,
    lock: bool | None = ...,
    lock_ttl: float | datetime.timedelta = ...,
    lock_wait: float | datetime.timedelta = ...,
    near: bool | None = ...,
    stale: float | datetime.timedelta = ...,
    soft: bool = ...,
    early: float | None = ...,
) -> Callable[[Callable[P, R]], Cached[P, R]]: ...


def cached_view(*args: Any, **given: Any) -> Any:
    view, given = options.split_call("cached_view", args, given, options.VIEW)
    decorate = _Reuse(given)
    return decorate if view is None else decorate(view)


cached_view.__doc__ = f"""Cache a view's responses, safely, with the model versions of ``@cached``.

``@cached_view``, ``@cached_view(600)`` and ``@cached_view(timeout=600, ...)``; on class-based
views through ``method_decorator(cached_view(600), name="get")``.

{options.params(options.VIEW)}
"""
