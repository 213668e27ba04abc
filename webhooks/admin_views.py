"""Staff pages inside Django admin that are not a model's changelist."""

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from .health import payments_health


def payments_health_view(request: HttpRequest) -> TemplateResponse:
    """Is money flowing? Routed through admin.site.admin_view (staff only) in webmagic/urls.py."""
    context = {**admin.site.each_context(request), "title": "Payments health",
               "health": payments_health(now=timezone.now())}
    return TemplateResponse(request, "admin/webhooks/payments_health.html", context)
