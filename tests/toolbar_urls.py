"""The URLconf of the debug toolbar tests (tests/toolbar_settings.py)."""

from django.urls import include
from django.urls import path

from tests import toolbar_views

urlpatterns = [
    path("dashboard/", toolbar_views.dashboard),
    path("async-dashboard/", toolbar_views.async_dashboard),
    path("clubs/<int:club_id>/", toolbar_views.club_page),
    # Included directly rather than by debug_toolbar_urls(), which adds nothing unless DEBUG
    # is on when this module is first imported.
    path("__debug__/", include("debug_toolbar.urls")),
]
