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

from cachedcall.core import Core
from cachedcall.decorators import LOAD_OPTIONS
from cachedcall.decorators import OPTIONS
from cachedcall.decorators import CachedFunction
from cachedcall.decorators import check_options
from cachedcall.exceptions import InvalidOption

if TYPE_CHECKING:
    from cachedcall.protocols import Cached

__all__ = ["cached_view"]

P = ParamSpec("P")
R = TypeVar("R")
VIEW_OPTIONS = (
    *("timeout", "cache", "depends_on", "prefix", "version"),
    *("vary_on", "per_user", "statuses"),
    *LOAD_OPTIONS,
)
_PRIVATE = ("private", "no-store", "no-cache")


class ViewCore(Core):
    """A :class:`Core` whose key is the request and whose value is the response."""

    def __init__(self, wrapped: Any, options: dict[str, Any], binding: str) -> None:
        view_options = {k: options.pop(k) for k in ("vary_on", "per_user", "statuses") if k in options}
        options["key"] = self.request_key
        super().__init__(wrapped, options, binding)
        # The request is the first argument; a view instance (a method decorated directly)
        # lives for one request and is not part of the key.
        self.binds_instance = False
        vary_on = view_options.get("vary_on", ())
        if isinstance(vary_on, str) or not all(isinstance(h, str) and h for h in vary_on):
            raise InvalidOption(f"{self.owner}: vary_on must be a list of header names, not {vary_on!r}.")
        self.learned = frozenset(h.lower() for h in vary_on)
        self.per_user = view_options.get("per_user", False)
        if not isinstance(self.per_user, bool):
            raise InvalidOption(f"{self.owner}: per_user must be True or False, not {self.per_user!r}.")
        statuses = view_options.get("statuses", (200,))
        if isinstance(statuses, int) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 100 <= s < 600 for s in statuses
        ):
            raise InvalidOption(
                f"{self.owner}: statuses must be a list of HTTP status codes, not {statuses!r}."
            )
        self.statuses = frozenset(statuses)
        self.bypass = self.bypass_reason
        self.prepare = self.store_form
        self.serve = self.rebuild

    # -- the key --------------------------------------------------------------------------

    def request_key(self, request: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
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
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                material += ("user", user.pk, user.get_session_auth_hash())
            else:
                material += ("anonymous",)
        return material

    # -- what is never read ---------------------------------------------------------------

    def bypass_reason(self, full: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        request = full[0] if full else None
        method = getattr(request, "method", None)
        if method not in ("GET", "HEAD"):
            return f"method {method}"
        if "HTTP_AUTHORIZATION" in request.META:  # type: ignore[union-attr]
            return "request carries Authorization"
        if not self.per_user and _authenticated(request):
            return "authenticated user (use per_user=True to cache per user)"
        return None

    # -- what is never stored -------------------------------------------------------------

    def store_form(
        self, response: Any, full: tuple[Any, ...], kwargs: dict[str, Any], ekey: str
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
        if session is not None and getattr(session, "accessed", False):
            vary.add("cookie")  # SessionMiddleware will add Vary: Cookie after us
        if not vary <= self.learned:
            # Learn the new headers (as Django's cache learns Vary) and store under a key
            # that includes their values, so this response only reaches requests that match.
            self.learned = self.learned | vary
            ekey = self.entry_key(full, kwargs)
        stored = (
            response.status_code,
            response.reason_phrase,
            list(response.headers.items()),
            response.content,
            response.charset,
        )
        return ekey, stored

    # -- serving a hit --------------------------------------------------------------------

    @staticmethod
    def rebuild(stored: Any, envelope: Any) -> HttpResponse:
        status, reason, headers, content, charset = stored
        response = HttpResponse(content, status=status, reason=reason)
        for name in list(response.headers):
            del response.headers[name]
        for name, value in headers:
            response.headers[name] = value
        response.charset = charset
        response.headers["Age"] = str(max(0, int(time.time() - envelope[2])))
        return response


def _authenticated(request: Any) -> bool:
    user = getattr(request, "user", None)
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
    """Keeps one ViewCore per decorated view across ``method_decorator``'s per-call decoration."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.cores: dict[str, ViewCore] = {}

    def __call__(self, view: Any) -> Any:
        if isinstance(view, type):
            raise InvalidOption(
                f"@cached_view decorates view functions; for {view.__name__} decorate "
                f"{view.__name__}.as_view() or use method_decorator(cached_view(...), name='get')."
            )
        name = f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', repr(view))}"
        core = self.cores.get(name)
        if core is None:
            core = self.cores[name] = ViewCore(view, dict(self.options), "function")
        return CachedFunction(view, {}, core=core)


@overload
def cached_view(view: Callable[P, R], /) -> Cached[P, R]: ...


@overload
def cached_view(
    timeout: float | datetime.timedelta | None = ...,
    *,
    cache: str | None = ...,
    depends_on: Sequence[Any] | Callable[..., Sequence[Any]] | None = ...,
    prefix: str = ...,
    version: int | str = ...,
    vary_on: Iterable[str] = ...,
    per_user: bool = ...,
    statuses: Iterable[int] = ...,
    single_flight: bool = ...,
    lock: bool | None = ...,
    lock_ttl: float | datetime.timedelta = ...,
    lock_wait: float | datetime.timedelta = ...,
    stale: float | datetime.timedelta = ...,
    soft: bool = ...,
    early: float | None = ...,
) -> Callable[[Callable[P, R]], Cached[P, R]]: ...


def cached_view(*args: Any, **options: Any) -> Any:
    """Cache a view's responses, safely, with the model versions of ``@cached``.

    :param timeout: as for ``@cached``.
    :param cache: the alias of ``settings.CACHES``.
    :param depends_on: as for ``@cached``; a callable receives the view's arguments.
    :param vary_on: request headers to key on from the start, besides those learned from
        responses' ``Vary``.
    :param per_user: cache pages of authenticated users, keyed by user and session auth hash
        (otherwise their requests bypass the cache).
    :param statuses: status codes to store (default ``(200,)``).
    """
    view, options = check_options("cached_view", args, options, VIEW_OPTIONS)
    decorate = _Reuse(options)
    return decorate if view is None else decorate(view)


assert set(VIEW_OPTIONS) - {"vary_on", "per_user", "statuses"} <= set(OPTIONS)
