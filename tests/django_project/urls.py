"""URLs of the test project."""

from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/charge/", views.charge),
    path("health/", views.health),
    path("only-shipping/", views.only_shipping),
    path("boom/", views.boom),
    path("nothing/", views.nothing),
    path("admin/wipe/", views.ran),
    path("notes/admin/wipe/", views.ran),
    path("", views.ran),
]
