"""How cachedcall's commands report a user's mistake: one line on stderr, exit status 2.

argparse prints the whole usage before its one-line error, and Django's ``CommandParser``,
through ``call_command``, raises a ``CommandError`` whose exit status is 1. Before Django 5.0
its subparsers were not told that they run from the command line (ticket #34259), so a
mistake after a subcommand became a traceback. Commands here use :class:`Parser` for every
parser: argparse's one line alone from the command line (``prog: error: message``, status 2),
a ``CommandError`` with ``returncode=2`` through ``call_command``.

Django (``manage.py``) reads ``--settings`` and ``--pythonpath`` wherever they are on the
command line, but the command's parser accepts its common options only before a
subcommand; :func:`common_options` lets a subcommand take them too.

Process state: none. (Django's command discovery skips this module: its name starts with
an underscore.)
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from django.core.management.base import CommandError
from django.core.management.base import CommandParser

__all__: list[str] = []


def one_line(text: str) -> str:
    """``text`` on one line: a message from a database driver or a setting may span several."""
    return " ".join(text.split())


class Parser(CommandParser):
    """Django's ``CommandParser``, whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {one_line(message)}\n")
        raise CommandError(f"Error: {one_line(message)}", returncode=2)


def use(parser: CommandParser) -> Parser:
    """Make the parser ``BaseCommand.create_parser`` built a :class:`Parser`, and return it.

    Django builds the parser itself and offers no hook for its class; :class:`Parser` only
    overrides a method and keeps no state of its own, so changing the instance's class is
    the whole of the change.
    """
    parser.__class__ = Parser
    assert isinstance(parser, Parser)
    return parser


def subcommands(parent: Parser, dest: str, helps: dict[str, str]) -> dict[str, Parser]:
    """Add a required subcommand (stored in ``dest``) for each name in ``helps``: each a
    :class:`Parser` that knows where it runs, with the common options of every Django command.
    """
    sub = parent.add_subparsers(dest=dest, required=True, parser_class=Parser)
    parsers = {}
    for name, help in helps.items():
        parser = parsers[name] = sub.add_parser(name, help=help, description=help)
        # Django >= 5.0 passes this to subparsers itself; 4.2 does not.
        parser.called_from_command_line = parent.called_from_command_line
        common_options(parser)
    return parsers


def common_options(parser: CommandParser) -> None:
    """Accept Django's common options after a subcommand as well as before it.

    Their defaults are suppressed, so that a subcommand leaves alone what was given before
    it (argparse copies every attribute a subparser sets onto the command's options); their
    help is the command's own.
    """
    hide = argparse.SUPPRESS
    parser.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=hide, help=hide)
    parser.add_argument("--settings", default=hide, help=hide)
    parser.add_argument("--pythonpath", default=hide, help=hide)
    for flag in ("--traceback", "--no-color", "--force-color", "--skip-checks"):
        parser.add_argument(flag, action="store_true", default=hide, help=hide)
