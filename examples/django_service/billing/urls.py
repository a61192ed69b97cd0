from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/charge", views.charge),
    path("health", views.health),
]
