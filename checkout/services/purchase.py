"""Starting a purchase: our CheckoutSession first, then Recurrente's hosted checkout (sessions.py)."""

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from checkout.models import CheckoutSession
from checkout.recurrente import JsonObject
from sites.models import Site
from webmagic.money import to_cents

from .sessions import SessionOpening, checkout_lifetime, checkout_session_open

logger = logging.getLogger(__name__)


class SiteNotForSale(Exception):
    """The site has been bought (or is otherwise no longer in preview)."""


@dataclass(frozen=True)
class RequestContext:
    ip_address: str | None
    user_agent: str
    referrer: str


def purchase_start(*, site_id: uuid.UUID, full_name: str, email: str, request_context: RequestContext) -> CheckoutSession:
    """Return a session with a Recurrente checkout URL for this buyer, reusing an open one.
    Raises SiteNotForSale or CheckoutUnavailable."""

    def site_check(site: Site) -> None:
        if not site.is_for_sale:
            raise SiteNotForSale(site.slug)

    def recent(site: Site) -> QuerySet[CheckoutSession]:
        # An open session is reused as it is: its stored name is never changed here. This form is
        # unauthenticated and anyone can type someone else's email: letting the latest submission
        # rename the open checkout would let a stranger choose the name our reminder greets the
        # buyer with and the account fulfilment creates. The buyer fixes a misspelling in the
        # portal later.
        return CheckoutSession.objects.filter(
            site_id=site.pk, customer_email=email, kind=CheckoutSession.Kind.PURCHASE, discount_percent=0,
            created_at__gte=timezone.now() - checkout_lifetime(),
        )

    def new_session(site: Site) -> CheckoutSession:
        return CheckoutSession.objects.create(
            site=site, kind=CheckoutSession.Kind.PURCHASE, status=CheckoutSession.Status.INITIATED,
            customer_name=full_name, customer_email=email, amount=site.purchase_amount, currency=site.currency,
            ip_address=request_context.ip_address, user_agent=request_context.user_agent[:500],
            referrer=request_context.referrer[:500],
        )

    return checkout_session_open(site_id=site_id, opening=SessionOpening(
        site_check=site_check, recent=recent, new_session=new_session, payload=purchase_payload,
    ))


def checkout_payload(
    *, session: CheckoutSession, item: JsonObject, success_url: str, cancel_url: str, extra: JsonObject | None = None,
) -> JsonObject:
    """The POST /checkouts body. Metadata values must be strings (Recurrente rejects others)."""
    payload = {
        "items": [item],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": {
            "checkout_session_id": str(session.pk),
            "site_id": str(session.site_id),
            "site_slug": session.site.slug,
            "kind": session.kind,
        },
        "expires_at": (timezone.now() + checkout_lifetime()).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    payload.update(extra or {})
    return payload


def purchase_payload(session: CheckoutSession) -> JsonObject:
    site = session.site
    item = {
        "name": f"Website — {site.business_name}"[:200],
        "amount_in_cents": to_cents(session.amount),
        "currency": session.currency,
        "quantity": 1,
        "charge_type": "one_time",
    }
    success = settings.SITE_URL + reverse("checkout:success") + f"?session={session.pk}"
    cancel = settings.SITE_URL + reverse("sites:page", args=[site.slug]) + "?checkout=cancelled"
    return checkout_payload(session=session, item=item, success_url=success, cancel_url=cancel)
