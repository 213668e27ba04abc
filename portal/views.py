"""The owner's portal: their sites with hosting state and next action, receipts, downloads.

Signed in with a verified email; a site or payment that is not the customer's answers 404, so
these URLs reveal nothing about other customers.
"""

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from customers.decorators import verified_customer_required
from sites.services import site_archive_build

from . import selectors


@require_GET
@verified_customer_required
def dashboard(request):
    sites = selectors.portal_sites_for_owner(user=request.user)
    return render(request, "portal/dashboard.html", {"portal_sites": sites})


@require_GET
@verified_customer_required
def site_detail(request, slug: str):
    confirming = request.GET.get("subscription") == "started"
    portal_site = selectors.portal_site_for_owner(user=request.user, slug=slug, confirming=confirming)
    if portal_site is None:
        raise Http404("No such site")
    payments = selectors.payments_for_site(user=request.user, site=portal_site.site)
    return render(request, "portal/site_detail.html", {"portal_site": portal_site, "payments": payments})


@require_GET
@verified_customer_required
def receipt(request, payment_id: str):
    payment = selectors.payment_for_receipt(user=request.user, recurrente_payment_id=payment_id)
    if payment is None:
        raise Http404("No such payment")
    return render(request, "portal/receipt.html", {"payment": payment})


@require_GET
@verified_customer_required
def download(request, slug: str):
    site, version = selectors.current_version_for_download(user=request.user, slug=slug)
    if site is None:
        raise Http404("No such site")
    if version is None:
        return render(request, "portal/download_unavailable.html", {"site": site}, status=404)
    response = HttpResponse(site_archive_build(site=site, version=version), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{site.slug}-website.zip"'
    return response
