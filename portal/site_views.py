"""Portal pages for one live site (DESIGN §9): change requests and custom domains.

Mounted at /portal/sites/<slug>/ (webmagic/urls.py). Same rules as the rest of the portal: signed
in with a verified email, and 404 for a site the customer does not own, so these URLs reveal
nothing about other customers' sites. Only active sites may create; others see why not.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from customers.decorators import verified_customer_required
from sites import services
from sites.forms import DomainForm, EditRequestForm
from sites.models import DomainVerificationRecord, EditRequest, Site
from webmagic.http import see_other
from webmagic.ratelimit import FAIL_OPEN, ratelimit

from .selectors import portal_site_for_owner

EDIT_HISTORY_LIMIT = 50


def _portal_site(request, slug):
    portal_site = portal_site_for_owner(user=request.user, slug=slug)
    if portal_site is None:
        raise Http404("No such site")
    return portal_site


@require_http_methods(["GET", "POST"])
@verified_customer_required
# Per signed-in owner; failing open while the cache is down (the database caps open requests anyway).
@ratelimit(key="user", rate="10/m", method="POST", when_cache_down=FAIL_OPEN)
def edits(request, slug: str):
    portal_site = _portal_site(request, slug)
    site = portal_site.site
    form = EditRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.edit_request_create(site_id=site.pk, user=request.user, description=form.cleaned_data["description"])
        except services.EditRequestRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Thank you — we received your request and emailed you a copy. We'll let you know as it moves along.")
            return see_other("site_portal:edits", slug=slug)
    # Only the customer's own requests: a previous owner's stay theirs.
    history = list(EditRequest.objects.filter(site=site, requested_by=request.user).order_by("-created_at", "-pk")[:EDIT_HISTORY_LIMIT])
    context = {
        "portal_site": portal_site, "form": form, "edit_requests": history,
        "can_create": site.status == Site.Status.ACTIVE,
    }
    return render(request, "portal/edits.html", context, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@verified_customer_required
@ratelimit(key="user", rate="10/m", method="POST", when_cache_down=FAIL_OPEN)
def domains(request, slug: str):
    portal_site = _portal_site(request, slug)
    site = portal_site.site
    form = DomainForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            record = services.domain_claim(site_id=site.pk, user=request.user, domain=form.cleaned_data["domain"])
        except services.DomainRefused as exc:
            form.add_error("domain", str(exc))
        else:
            messages.success(request, f"{record.domain} is added. Publish the TXT record below to prove it's yours.")
            return see_other("site_portal:domains", slug=slug)
    context = {
        "portal_site": portal_site, "form": form,
        "domains": list(DomainVerificationRecord.objects.filter(site=site).order_by("domain")),
        "can_create": site.status == Site.Status.ACTIVE,
        "cname_target": urlsplit(settings.SITE_URL).hostname,
    }
    return render(request, "portal/domains.html", context, status=400 if form.errors else 200)


@require_POST
@verified_customer_required
def domain_delete(request, slug: str, pk: int):
    site = _portal_site(request, slug).site
    if not services.domain_delete(record_id=pk, site_id=site.pk, user=request.user):
        raise Http404("No such domain")
    messages.success(request, "The domain is removed from your site.")
    return see_other("site_portal:domains", slug=slug)
