"""The database router of the replica scenario's readers: reads from ``replica``."""

from __future__ import annotations

from typing import Any


class ReplicaRouter:
    """Every read goes to the replica, every write to the primary."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "replica"

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True
