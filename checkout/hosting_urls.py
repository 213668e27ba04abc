"""Hosting actions for one site, mounted at /portal/sites/<slug>/hosting/ (webmagic/urls.py)."""

from django.urls import path

from . import hosting_views

app_name = "hosting"

urlpatterns = [
    path("start/", hosting_views.start, name="start"),
    path("cancel/", hosting_views.cancel, name="cancel"),
    path("returned/", hosting_views.returned, name="returned"),
]
