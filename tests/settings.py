"""Django settings of the test suite. Cache servers are started by tests/servers.py and
plugged in per test with override_settings (their ports are only known at run time)."""

import os

from psycopg import IsolationLevel

SECRET_KEY = "cachedcall-tests"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "cachedcall",
    "tests.testapp",
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "pg": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "cachedcall",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "TEST": {"NAME": f"test_cachedcall_{os.getpid()}"},
    },
    # The same database, its transactions at REPEATABLE READ (tests/test_snapshots.py).
    "pg_rr": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "cachedcall",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "OPTIONS": {"isolation_level": IsolationLevel.REPEATABLE_READ},
        "TEST": {"MIRROR": "pg"},
    },
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"},
}
ROOT_URLCONF = "tests.urls"
ALLOWED_HOSTS = ["testserver", "a.example", "b.example"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": ["tests/templates"]}]
LANGUAGES = [("en", "English"), ("fr", "French")]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
