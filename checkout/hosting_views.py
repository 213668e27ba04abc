"""Portal hosting actions (DESIGN §6): start the $95/month checkout, cancel with confirmation.

Owner-only: anyone else gets 404, so these URLs do not reveal which sites exist or who owns
them. The portal pages themselves (the portal app) link here.
"""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import dateformat, timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from sites.models import Site
from webmagic.http import see_other
from webmagic.ratelimit import FAIL_OPEN, ratelimit

from .services.hosting import (
    HostingCancelFailed,
    HostingCancelUnconfirmed,
    HostingNotOwner,
    HostingRefused,
    hosting_cancel,
    hosting_checkout_start,
    subscription_cancellable_for_site,
)
from .services.sessions import CheckoutUnavailable
from .services.subscriptions import portal_site_path
from .tasks import hosting_checkouts_reconcile_soon

logger = logging.getLogger(__name__)

def _owned_site(request, slug) -> Site:
    site = get_object_or_404(Site, slug=slug)
    if site.owner_id is None or site.owner_id != request.user.pk:
        raise Http404("No such site")
    return site


@login_required
@require_POST
# Per signed-in owner, and failing open: a cache outage must not stop a customer paying for hosting.
@ratelimit(key="user", rate="10/m", when_cache_down=FAIL_OPEN)
def start(request, slug):
    if not request.user.email_verified:
        return redirect("portal:dashboard")
    site = _owned_site(request, slug)
    back = portal_site_path(site.slug)
    try:
        session = hosting_checkout_start(site_id=site.pk, user=request.user)
    except HostingNotOwner:
        raise Http404("No such site") from None
    except HostingRefused as exc:
        messages.info(request, str(exc))
        return see_other(back)
    except CheckoutUnavailable:
        messages.error(
            request,
            "We couldn't open the payment page: our payment provider didn't answer. Nothing was charged. "
            "Please try again in a moment.",
        )
        return see_other(back)
    return see_other(session.checkout_url)


@never_cache
@login_required
@require_GET
def returned(request, slug):
    """Recurrente's success_url for hosting: ask about the owner's open hosting checkout now, then
    show the portal's "confirming" notice until hosting is live."""
    site = _owned_site(request, slug)
    hosting_checkouts_reconcile_soon(site_id=site.pk, user_id=request.user.pk)
    return see_other(portal_site_path(site.slug) + "?subscription=started")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
# Failing open too: a customer who wants to stop paying must be able to, outage or not.
@ratelimit(key="user", rate="10/m", method="POST", when_cache_down=FAIL_OPEN)
def cancel(request, slug):
    """GET asks for confirmation; POST cancels at Recurrente."""
    if not request.user.email_verified:
        return redirect("portal:dashboard")
    site = _owned_site(request, slug)
    back = portal_site_path(site.slug)
    subscription = subscription_cancellable_for_site(site_id=site.pk)
    if request.method == "GET":
        if subscription is None:
            messages.info(request, "There is no active hosting subscription to cancel.")
            return see_other(back)
        return render(request, "checkout/hosting_cancel.html", {"site": site, "subscription": subscription, "portal_url": back})
    try:
        subscription = hosting_cancel(site_id=site.pk, user=request.user)
    except HostingNotOwner:
        raise Http404("No such site") from None
    except HostingRefused as exc:
        messages.info(request, str(exc))
        return see_other(back)
    except HostingCancelFailed:
        context = {"site": site, "subscription": subscription, "portal_url": back, "failed": True}
        return render(request, "checkout/hosting_cancel.html", context, status=503)
    except HostingCancelUnconfirmed:
        # Recurrente may have cancelled: the page must not say nothing changed (staff were alerted).
        context = {"site": site, "subscription": subscription, "portal_url": back, "unconfirmed": True}
        return render(request, "checkout/hosting_cancel.html", context, status=503)
    site.refresh_from_db(fields=["status"])
    until = subscription.current_period_end
    if site.status == Site.Status.ACTIVE and until and until > timezone.now():
        until_text = dateformat.format(timezone.localtime(until), "F j, Y")
        messages.success(
            request, f"Hosting is cancelled. {site.business_name} stays live until {until_text}, and you won't be charged again.",
        )
    else:
        messages.success(request, f"Hosting is cancelled. You won't be charged again for {site.business_name}.")
    return see_other(back)
