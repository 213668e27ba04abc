"""Reads for the customer portal: a customer's sites with their hosting state, and their payments.

Every query is scoped to the signed-in customer, so another customer's site or payment is simply
not found (the views answer 404, never 403, so ids cannot be probed)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.db.models import Prefetch
from django.urls import NoReverseMatch, reverse

from checkout.models import Payment, Subscription
from customers.models import CustomerUser
from sites.models import Site, SiteVersion
from webmagic.money import format_usd

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class NewestSubscriptionsFirst(TypedDict):
        """What _owned_sites' prefetch adds to each site."""

        subscriptions_newest_first: list[Subscription]

# Subscription states in which Recurrente is charging (the site is live).
CHARGING = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)
STOPPED = (Subscription.Status.PAUSED, Subscription.Status.CANCELLED)

PAST_DUE_MESSAGE = "We couldn't charge your card; Recurrente will retry for a few days — your site stays live meanwhile."
CONFIRMING_MESSAGE = "We're confirming your hosting payment…"

SITE_STATUS_LABELS: dict[str, str] = {
    Site.Status.PREVIEW: "Preview",
    Site.Status.OWNED: "Yours · not online yet",
    Site.Status.ACTIVE: "Live",
    Site.Status.SUSPENDED: "Offline",
}


@dataclass(frozen=True)
class HostingAction:
    label: str
    url: str
    method: str  # "post" (a form with a button) or "get" (a link)
    primary: bool = True


@dataclass(frozen=True)
class HostingState:
    code: str  # not_started, confirming, unable_to_start, live, past_due, ending, suspended, none
    headline: str
    detail: str = ""
    tone: str = "info"  # info, success, warning
    renews_on: datetime | None = None
    ends_on: datetime | None = None
    actions: list[HostingAction] = field(default_factory=list)


@dataclass(frozen=True)
class PortalSite:
    site: Site
    subscription: Subscription | None
    hosting: HostingState

    @property
    def status_label(self) -> str:
        return SITE_STATUS_LABELS.get(self.site.status, self.site.get_status_display())


def _hosting_url(name: str, slug: str) -> str | None:
    """The hosting actions (start, cancel) are routes of the checkout app's hosting flow. Until that
    URLconf is installed the button is hidden rather than the whole portal failing to render.
    Positional args, so the route's own parameter name does not matter."""
    try:
        return reverse(name, args=[slug])
    except NoReverseMatch:
        return None


def _actions(*candidates: tuple[str, str, str, str, bool]) -> list[HostingAction]:
    actions = []
    for label, route, slug, method, primary in candidates:
        url = _hosting_url(route, slug)
        if url:
            actions.append(HostingAction(label=label, url=url, method=method, primary=primary))
    return actions


def hosting_state(*, site: Site, subscription: Subscription | None, confirming: bool = False) -> HostingState:
    """What the portal says about a site's hosting, and the next thing its owner can do.

    `confirming`: the owner just came back from the hosting checkout (`?subscription=started`);
    until the webhook makes hosting active we say we're confirming, rather than offering to pay again.
    """
    status = subscription.status if subscription else None
    slug = site.slug
    activate = (f"Activate hosting — {format_usd(site.monthly_amount)}/month", "hosting:start", slug, "post", True)
    reactivate = ("Reactivate hosting", "hosting:start", slug, "post", True)
    cancel = ("Cancel hosting", "hosting:cancel", slug, "get", False)

    if site.status == Site.Status.PREVIEW:
        return HostingState(code="none", headline="Not purchased")
    charging = status in CHARGING and site.status == Site.Status.ACTIVE
    if (confirming and not charging) or (status == Subscription.Status.PENDING and not charging):
        return HostingState(
            code="confirming", headline=CONFIRMING_MESSAGE,
            detail="This usually takes a few seconds. We'll email you when your site is live.",
        )
    if site.status == Site.Status.ACTIVE:
        if subscription is None:
            return HostingState(code="live", headline="Your site is live", tone="success")
        period_end = subscription.current_period_end
        if subscription.cancel_requested_at and status in CHARGING:
            return HostingState(
                code="ending", headline="Hosting is cancelled", tone="warning", ends_on=period_end,
                detail="Your site stays live until the end of the period you paid for.",
            )
        if status == Subscription.Status.PAST_DUE:
            return HostingState(
                code="past_due", headline="Payment problem", detail=PAST_DUE_MESSAGE, tone="warning",
                actions=_actions(cancel),
            )
        if status == Subscription.Status.ACTIVE:
            return HostingState(
                code="live", headline="Your site is live", tone="success", renews_on=period_end,
                detail=f"Hosting {format_usd(subscription.amount)}/month.", actions=_actions(cancel),
            )
        # Recurrente stopped charging but the site has not been switched off yet.
        return HostingState(
            code="suspended", headline="Hosting has stopped", tone="warning",
            detail="Reactivate hosting to keep your site online.", actions=_actions(reactivate),
        )
    if site.status == Site.Status.SUSPENDED or status in STOPPED:
        return HostingState(
            code="suspended", headline="Your site is offline", tone="warning",
            detail="Hosting has stopped, so visitors see a “temporarily unavailable” page. Reactivate to put it back online.",
            actions=_actions(reactivate),
        )
    if status == Subscription.Status.UNABLE_TO_START:
        return HostingState(
            code="unable_to_start", headline="Hosting didn't start", tone="warning",
            detail="Recurrente couldn't charge the card for the first month. You can try again with another card.",
            actions=_actions(activate),
        )
    return HostingState(
        code="not_started", headline="Not online yet",
        detail="Your site is yours. Activate hosting to put it live on the internet.", actions=_actions(activate),
    )


def _owned_sites(user: CustomerUser):
    # The newest subscription first; one prefetch query for all sites, whatever their number.
    newest_first = Subscription.objects.order_by("-created_at", "-pk")
    return Site.objects.filter(owner=user).prefetch_related(
        Prefetch("subscriptions", queryset=newest_first, to_attr="subscriptions_newest_first")
    )


def _portal_site(site: "WithAnnotations[Site, NewestSubscriptionsFirst]", *, confirming: bool = False) -> PortalSite:
    subscription = site.subscriptions_newest_first[0] if site.subscriptions_newest_first else None
    hosting = hosting_state(site=site, subscription=subscription, confirming=confirming)
    return PortalSite(site=site, subscription=subscription, hosting=hosting)


def portal_sites_for_owner(*, user: CustomerUser) -> list[PortalSite]:
    """Every site `user` owns, each with its hosting state, in two queries."""
    return [_portal_site(site) for site in _owned_sites(user).order_by("business_name", "pk")]


def portal_site_for_owner(*, user: CustomerUser, slug: str, confirming: bool = False) -> PortalSite | None:
    site = _owned_sites(user).filter(slug=slug).first()
    return _portal_site(site, confirming=confirming) if site else None


def payments_for_site(*, user: CustomerUser, site: Site) -> list[Payment]:
    """The customer's own payments for a site (a previous owner's stay theirs)."""
    return list(Payment.objects.filter(site=site, user=user).order_by("-paid_at", "-pk"))


def payment_for_receipt(*, user: CustomerUser, recurrente_payment_id: str) -> Payment | None:
    return Payment.objects.select_related("site", "user").filter(recurrente_payment_id=recurrente_payment_id, user=user).first()


def current_version_for_download(*, user: CustomerUser, slug: str) -> tuple[Site | None, SiteVersion | None]:
    site = Site.objects.filter(owner=user, slug=slug).first()
    if site is None:
        return None, None
    return site, site.versions.filter(is_current=True).first()
