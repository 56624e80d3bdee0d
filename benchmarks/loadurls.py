"""The load test's URLs: the example's club page (cachedcall) and the hand-written one."""

from clubs import views
from django.urls import path

from benchmarks.loadsite import hand_page

urlpatterns = [
    path("clubs/<str:clubname>/", views.club_page),
    path("hand/<str:clubname>/", hand_page),
]
