#!/usr/bin/env python
"""The cachedcall example project: ``python example/manage.py demo`` tells the story."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    # The example runs against the cachedcall of the checkout it lives in.
    sys.path[:0] = [str(here), str(here.parent)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
