"""Change requests and custom domains for one site, mounted at /portal/sites/<slug>/ (webmagic/urls.py)."""

from django.urls import path

from . import site_views

app_name = "site_portal"

urlpatterns = [
    path("edits/", site_views.edits, name="edits"),
    path("domains/", site_views.domains, name="domains"),
    path("domains/<int:pk>/delete/", site_views.domain_delete, name="domain_delete"),
]
