"""The version matrix: ``nox`` runs the suite on Python 3.10-3.13 x Django 4.2 / 5.2.

Python interpreters come from pyenv here; ``PYENV_VERSION=3.10.13:3.11.7:3.12.1:3.13.0``
makes all of them visible to nox at once.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

DJANGO = {"4.2": "django>=4.2,<5.0", "5.2": "django>=5.2,<5.3"}


@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
@nox.parametrize("django", list(DJANGO))
def tests(session: nox.Session, django: str) -> None:
    session.install("-e", ".[test]", DJANGO[django])
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "cachedcall")
