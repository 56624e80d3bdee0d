"""A writer process that imports only Django and the models, never a cached function.

Run as ``python -m tests.writer <memcached location> <pg test db> <club pk> <name>``; it
saves one ClubClass and exits. The reader's entries must go stale all the same.
"""

import os
import sys

import django


def main() -> None:
    location, db_name, club_pk, name = sys.argv[1:]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    from django.conf import settings

    django.setup()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": location,
        }
    }
    settings.DATABASES["pg"]["NAME"] = db_name
    from tests.testapp.models import ClubClass

    assert "tests.test_pg" not in sys.modules
    ClubClass.objects.using("pg").create(club_id=int(club_pk), name=name)


if __name__ == "__main__":
    main()
