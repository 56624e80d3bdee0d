"""Integrations with other libraries, each an optional extra that cachedcall never imports.

``cachedcall.contrib.prometheus`` (``pip install cachedcall[prometheus]``) exports call
counts and durations; ``cachedcall.contrib.debug_toolbar`` is a django-debug-toolbar panel.
Both are built on :func:`cachedcall.subscribe`.

Process state: none.
"""

from __future__ import annotations

__all__: list[str] = []
