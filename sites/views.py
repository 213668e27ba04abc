from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from . import selectors
from .models import Site

# The generated HTML is untrusted. It is served as its own document under a CSP sandbox (an
# opaque origin: no access to our cookies, storage or same-origin requests) and framed with the
# same sandbox flags, so even a browser ignoring one of the two still isolates it.
SANDBOX_FLAGS = "allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox"
DOCUMENT_CSP = f"sandbox {SANDBOX_FLAGS}; frame-ancestors 'self'"


@require_GET
def home(request):
    # Preview links are shared one by one; only a laptop (DEBUG) lists them for convenience.
    sites = selectors.demo_sites_for_home() if settings.DEBUG else []
    return render(request, "home.html", {"sites": sites})


def _viewer_owns(request, site: Site) -> bool:
    user = request.user
    return user.is_authenticated and (user.pk == site.owner_id or user.is_staff)


@require_GET
def site_page(request, slug):
    site = selectors.site_for_page(slug=slug)
    if site is None:
        raise Http404("No such site")
    context = {"site": site, "sandbox_flags": SANDBOX_FLAGS, "viewer_owns": _viewer_owns(request, site)}
    if site.status == Site.Status.PREVIEW:
        context["checkout_cancelled"] = request.GET.get("checkout") == "cancelled"
        return render(request, "sites/preview.html", context)
    if site.status == Site.Status.OWNED:
        return render(request, "sites/claimed.html", context)
    if site.status == Site.Status.ACTIVE:
        return render(request, "sites/live.html", context)
    return render(request, "sites/unavailable.html", context, status=503)


@require_GET
@xframe_options_sameorigin
def site_document(request, slug):
    site = selectors.site_for_page(slug=slug)
    if site is None:
        raise Http404("No such site")
    visible = site.status in (Site.Status.PREVIEW, Site.Status.ACTIVE) or (
        site.status == Site.Status.OWNED and _viewer_owns(request, site)
    )
    version = selectors.current_version(site=site) if visible else None
    if version is None:
        raise Http404("Nothing to show")
    response = HttpResponse(version.html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = DOCUMENT_CSP
    response["Cache-Control"] = "private, max-age=0"
    return response
