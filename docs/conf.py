"""Sphinx configuration of the cachedcall documentation site.

Built with warnings as errors: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
It needs only the ``docs`` extra: ``pip install -e ".[docs]"``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

# Autodoc imports cachedcall, its contrib modules included: a minimal Django configuration
# (nothing is connected to), and the optional dependencies of contrib mocked where the
# build has not installed them (Read the Docs installs the docs extra only).
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cachedcall"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
)
django.setup()
OPTIONAL = ("prometheus_client", "debug_toolbar", "pytest")
autodoc_mock_imports = [name for name in OPTIONAL if importlib.util.find_spec(name) is None]

import cachedcall  # noqa: E402

project = "cachedcall"
author = "the cachedcall authors"
copyright = "the cachedcall authors, MIT licence"
release = cachedcall.__version__
version = release

extensions = ["sphinx.ext.autodoc"]
# No intersphinx: the build runs offline (CI has no network but the package registries).

html_theme = "furo"
html_title = f"cachedcall {release}"
html_static_path = ["_static"]
exclude_patterns = ["_build"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
# Documented names are shown where users import them from.
add_module_names = True
nitpicky = False
