from clubs import views
from django.urls import path

urlpatterns = [
    path("", views.index, name="index"),
    path("clubs/<str:clubname>/", views.club_page, name="club_page"),
    path("me/", views.my_page, name="my_page"),
]
