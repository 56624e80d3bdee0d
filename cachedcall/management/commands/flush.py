"""``manage.py flush``, as Django's, then every cachedcall entry is made unreachable.

Flushing empties every table with SQL, sending no signal a receiver could bump on, so
without this the entries computed from the flushed rows would stay valid. Django's own
test cases flush the same way: ``TransactionTestCase`` (and pytest-django's
``transactional_db`` and ``live_server``) after each test. Being the ``flush`` command of an
installed app, this one is what ``call_command("flush")`` runs; it calls
:func:`cachedcall.reset` after the flush succeeded (one counter bump in each alias).
Answering anything but ``yes`` at its question flushes nothing and resets nothing (exit
status 0, as Django's own flush). A mistake in its command line (``--database`` that is
not in DATABASES, an unknown option) is one line on stderr and exit status 2, as for
``manage.py cachedcall``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.core.management.commands import flush
from django.db import connections

from cachedcall.management.commands import _parsing


class Command(flush.Command):
    help = f"{flush.Command.help} Then makes every cachedcall entry unreachable."

    def add_arguments(self, parser: CommandParser) -> None:
        self._parser = _parsing.use(parser)
        super().add_arguments(self._parser)

    def handle(self, **options: Any) -> None:
        known = tuple(connections)
        if options["database"] not in known:
            # Django >= 5.0 gives --database these choices itself; 4.2 raises
            # ConnectionDoesNotExist from handle().
            self._parser.error(
                f"argument --database: invalid choice: {options['database']!r} "
                f"(choose from {', '.join(map(repr, known))})"
            )
        if options["interactive"] and not self._confirmed(options["database"]):
            self.stdout.write("Flush cancelled: nothing was flushed, no cachedcall entry was reset.")
            return
        # Asked here rather than by Django's flush, which returns the same way whether it
        # flushed or was told no: the reset must follow a flush, and only a flush.
        super().handle(**{**options, "interactive": False})
        from cachedcall import bumps

        bumps.reset()

    def _confirmed(self, database: str) -> bool:
        name = connections[database].settings_dict["NAME"]
        answer = input(
            "You have requested a flush of the database.\n"
            f'This will IRREVERSIBLY DESTROY all data currently in the "{name}" database,\n'
            "return each table to an empty state, and make every cachedcall entry unreachable.\n"
            "Are you sure you want to do this?\n\n"
            "    Type 'yes' to continue, or 'no' to cancel: "
        )
        return answer == "yes"
