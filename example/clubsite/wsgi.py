import os
import sys
from pathlib import Path

_example = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_example), str(_example.parent)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubsite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
