"""The version matrix: ``nox`` runs the suite on every supported Python x Django pair.

Django 4.2 LTS and 5.2 LTS on Python 3.10-3.13; Django 6.0 and 6.1 on Python 3.12-3.13
only, since Django 6.x needs Python >= 3.12. Pairs that cannot exist are not generated
(no session is skipped at run time), so the sessions are named by both versions:
``nox -s "tests(python='3.12', django='6.1')"`` runs one, ``nox -s tests`` all of them,
``nox -p 3.12`` the ones on one interpreter.

Python interpreters come from pyenv here; ``PYENV_VERSION=3.11.7:3.10.13:3.12.1:3.13.0``
makes all of them visible to nox at once.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# Each Django series, pinned to itself, and the Pythons it runs on.
DJANGO = {
    "4.2": "django>=4.2,<5.0",
    "5.2": "django>=5.2,<5.3",
    "6.0": "django>=6.0,<6.1",
    "6.1": "django>=6.1,<6.2",
}
PYTHON_ALL = ["3.10", "3.11", "3.12", "3.13"]
PYTHON_FOR = {
    "4.2": PYTHON_ALL,
    "5.2": PYTHON_ALL,
    "6.0": ["3.12", "3.13"],
    "6.1": ["3.12", "3.13"],
}
MATRIX = [
    nox.param(python, django, tags=[f"django-{django}"])
    for python in PYTHON_ALL
    for django in DJANGO
    if python in PYTHON_FOR[django]
]


@nox.session
@nox.parametrize(("python", "django"), MATRIX)
def tests(session: nox.Session, django: str) -> None:
    session.install("-e", ".[test]", DJANGO[django])
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "cachedcall")


@nox.session(python="3.12")
def docs(session: nox.Session) -> None:
    """The documentation site, as Read the Docs builds it: warnings are errors."""
    session.install("-e", ".[docs]")
    session.run("python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
