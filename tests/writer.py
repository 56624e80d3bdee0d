"""A writer process that imports only Django and the models, never a cached function.

Run as ``python -m tests.writer <memcached location> <pg test db> <club pk> <name> [alias]``;
it saves one ClubClass and exits. The reader's entries must go stale all the same. With an
``alias``, memcached is that alias of CACHES and the default is a LocMemCache, as in a
project whose functions say ``cache="<alias>"``.
"""

import os
import sys

import django


def main() -> None:
    location, db_name, club_pk, name, *alias = sys.argv[1:]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    from django.conf import settings

    django.setup()
    memcached = {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": location}
    if alias:
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            alias[0]: memcached,
        }
    else:
        settings.CACHES = {"default": memcached}
    settings.DATABASES["pg"]["NAME"] = db_name
    from tests.testapp.models import ClubClass

    assert "tests.test_pg" not in sys.modules
    ClubClass.objects.using("pg").create(club_id=int(club_pk), name=name)


if __name__ == "__main__":
    main()
