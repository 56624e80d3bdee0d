"""``manage.py flush``, as Django's, then every cachedcall entry is made unreachable.

Flushing empties every table with SQL, sending no signal a receiver could bump on, so
without this the entries computed from the flushed rows would stay valid. Django's own
test cases flush the same way: ``TransactionTestCase`` (and pytest-django's
``transactional_db`` and ``live_server``) after each test. Being the ``flush`` command of an
installed app, this one is what ``call_command("flush")`` runs; it calls
:func:`cachedcall.reset` after the flush succeeded (one counter bump in each alias).
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush


class Command(flush.Command):
    help = f"{flush.Command.help} Then makes every cachedcall entry unreachable."

    def handle(self, **options: Any) -> None:
        super().handle(**options)
        from cachedcall import bumps

        bumps.reset()
