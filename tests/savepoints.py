"""A write inside a savepoint that is rolled back, as the transaction tests need it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction


class _RollBack(Exception):
    pass


def rolled_back(write: Callable[[], Any]) -> None:
    """Run ``write`` in a nested ``atomic()`` block that is then rolled back."""
    try:
        with transaction.atomic():
            write()
            raise _RollBack
    except _RollBack:
        pass
