import django
from django.urls import path

from tests import views

urlpatterns = [
    path("clubs/<int:club_id>/", views.club_page),
    path("plain/", views.plain),
    path("status/<int:code>/", views.status),
    path("cookie/", views.sets_cookie),
    path("csrf/", views.uses_csrf),
    path("cache-control/", views.cache_control),
    path("vary/", views.vary),
    path("streaming/", views.streaming),
    path("template/", views.template),
    path("whoami/", views.whoami),
    path("whoami-per-user/", views.whoami_per_user),
    path("session/", views.session_flavour),
    path("language/", views.language),
    path("host/", views.host),
    path("headers/", views.headers),
    path("faithful/", views.faithful),
    path("async/", views.async_page),
    path("class-based/", views.ClassBased.as_view()),
    path("as-view/", views.as_view_page),
    path("composed-vary/", views.composed_vary),
    path("composed-never/", views.composed_never),
    path("async-whoami/", views.async_whoami),
    path("async-whoami-per-user/", views.async_whoami_per_user),
    path("start-session/", views.start_session),
    path("writes-session/", views.writes_session),
    path("async-as-view/", views.async_as_view_page),
]

if django.VERSION >= (5, 0):  # method_decorator wraps async methods from Django 5.0 on
    urlpatterns.append(path("async-method-decorated/", views.AsyncMethodDecorated.as_view()))
