"""Change requests and custom domains for one site, mounted at /portal/sites/<slug>/ (webmagic/urls.py)."""

from django.urls import path

from . import portal_views

app_name = "site_portal"

urlpatterns = [
    path("edits/", portal_views.edits, name="edits"),
    path("domains/", portal_views.domains, name="domains"),
    path("domains/<int:pk>/delete/", portal_views.domain_delete, name="domain_delete"),
]
