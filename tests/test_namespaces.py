"""Test runs and the development server never share entries, either way (the seed's story).

Separate OS processes on the example project, one memcached, the same settings: a "dev"
process caches the club page from its own database; a test run (``manage.py test``, then
pytest) caches the same page from its test database, with other rows, and resets its
namespace; then the dev process reads its own page back, as a hit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"

DEV = """
import datetime, json, os
from django.core.management import call_command
from django.test import Client
from cachedcall.testing import record
from clubs.models import Club, ClubClass
from clubs.views import club_page
if os.environ.get("SEED"):
    call_command("migrate", verbosity=0)
    chess = Club.objects.create(name="chess")
    ClubClass.objects.create(club=chess, name="DEV-CLASS", start_time=datetime.time(18))
with record() as events:
    page = Client().get("/clubs/chess/").content.decode()
print(json.dumps({"page": page, "hits": events.hits(club_page), "misses": events.misses(club_page)}))
"""

TEST_MODULE = """
import datetime
from django.test import TestCase
from cachedcall.testing import record
from clubs.models import Club, ClubClass
from clubs.views import club_page


class TestOnlyRows(TestCase):
    def test_the_test_database_page(self):
        chess = Club.objects.create(name="chess")
        ClubClass.objects.create(club=chess, name="TEST-ONLY-CLASS", start_time=datetime.time(9))
        with record() as events:
            first = self.client.get("/clubs/chess/")
            second = self.client.get("/clubs/chess/")
        self.assertContains(first, "TEST-ONLY-CLASS")
        self.assertNotContains(first, "DEV-CLASS")
        self.assertEqual((events.misses(club_page), events.hits(club_page)), (1, 1))
        self.assertContains(second, "TEST-ONLY-CLASS")
"""


def _run(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _dev(env: dict[str, str], seed: bool = False) -> dict[str, object]:
    import json

    script = textwrap.dedent(DEV)
    env = {**env, "SEED": "1"} if seed else env
    result = _run([sys.executable, str(EXAMPLE / "manage.py"), "shell", "-c", script], env)
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
def project(memcached_server, tmp_path):
    """The example project with a test module of ours, the dev database and memcached."""
    tests = EXAMPLE / "clubs" / "test_namespace_probe.py"
    tests.write_text(TEST_MODULE)
    env = {
        **os.environ,
        "CACHEDCALL_EXAMPLE_MEMCACHED": memcached_server.location,
        "CACHEDCALL_EXAMPLE_DB": str(tmp_path / "dev.sqlite3"),
        "PYTHONPATH": str(EXAMPLE),
    }
    # A process this test starts would share its run's namespace: these are not of this run.
    for name in ("DJANGO_SETTINGS_MODULE", "PYTEST_XDIST_WORKER", "CACHEDCALL_NAMESPACE"):
        env.pop(name, None)
    yield env
    tests.unlink()


def test_a_test_run_never_reads_nor_changes_what_the_dev_server_cached(project):
    first = _dev(project, seed=True)
    assert "DEV-CLASS" in first["page"] and first["misses"] == 1
    assert _dev(project)["hits"] == 1  # the dev page is cached

    # manage.py test: the project's TEST_RUNNER is cachedcall.testing.DiscoverRunner.
    _run([sys.executable, str(EXAMPLE / "manage.py"), "test", "clubs.test_namespace_probe"], project)
    # pytest (the plugin comes with cachedcall), on the same settings and memcached.
    _run(
        [
            sys.executable,
            *("-m", "pytest", "-c", os.devnull, "-p", "no:cacheprovider", "-p", "no:randomly"),
            *("--ds", "clubsite.settings", "--rootdir", str(EXAMPLE)),
            str(EXAMPLE / "clubs" / "test_namespace_probe.py"),
        ],
        project,
        cwd=EXAMPLE,
    )

    after = _dev(project)
    assert "DEV-CLASS" in after["page"] and "TEST-ONLY-CLASS" not in after["page"]
    assert (after["hits"], after["misses"]) == (1, 0)  # the runs' resets did not touch it
