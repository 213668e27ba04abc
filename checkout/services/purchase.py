"""Starting a purchase: our CheckoutSession first, then Recurrente's hosted checkout."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from checkout.clients import recurrente_client
from checkout.models import CheckoutSession
from checkout.recurrente import RecurrenteError
from sites.models import Site
from webmagic.money import to_cents

logger = logging.getLogger(__name__)


class SiteNotForSale(Exception):
    """The site has been bought (or is otherwise no longer in preview)."""


class CheckoutUnavailable(Exception):
    """Recurrente could not create the checkout; the session (the lead) is kept."""

    def __init__(self, session: CheckoutSession):
        super().__init__(f"checkout unavailable for session {session.pk}")
        self.session = session


@dataclass(frozen=True)
class RequestContext:
    ip_address: str | None
    user_agent: str
    referrer: str


# The reconciler's first look at a new checkout (its back-off schedule is in reconcile.py).
RECONCILE_FIRST_LOOK_MINUTES = 2


def checkout_lifetime() -> timedelta:
    return timedelta(hours=settings.CHECKOUT_LIFETIME_HOURS)


def purchase_start(*, site_id, full_name: str, email: str, request_context: RequestContext) -> CheckoutSession:
    """Return a session with a Recurrente checkout URL for this buyer, reusing an open one.

    The session row is committed before Recurrente is called, so a failure or crash keeps the
    lead. Raises SiteNotForSale or CheckoutUnavailable.
    """
    session, reusable = _session_open_or_create(
        site_id=site_id, full_name=full_name, email=email, request_context=request_context
    )
    if reusable:
        logger.info("checkout session %s reused for site %s", session.pk, site_id)
        return session
    return checkout_create(session_id=session.pk, payload_builder=purchase_payload)


def _reusable_sessions(*, site_id, email: str):
    return CheckoutSession.objects.filter(
        site_id=site_id, customer_email=email, kind=CheckoutSession.Kind.PURCHASE, discount_percent=0,
        created_at__gte=timezone.now() - checkout_lifetime(),
    )


def _session_open_or_create(*, site_id, full_name, email, request_context) -> tuple[CheckoutSession, bool]:
    with transaction.atomic():
        # Locking the site serialises purchase attempts for it, so a double submit finds the
        # first attempt's session instead of racing it.
        site = Site.objects.select_for_update().get(pk=site_id)
        if not site.is_for_sale:
            raise SiteNotForSale(site.slug)
        open_session = _reusable_sessions(site_id=site_id, email=email).filter(
            status=CheckoutSession.Status.CHECKOUT_CREATED
        ).order_by("-created_at").first()
        if open_session:
            # The stored name is never changed here. This form is unauthenticated and anyone can
            # type someone else's email: letting the latest submission rename the open checkout
            # would let a stranger choose the name our reminder greets the buyer with and the
            # account fulfilment creates. The buyer fixes a misspelling in the portal later.
            if open_session.customer_name != full_name:
                logger.info("checkout session %s reused with a different name; the stored name is kept", open_session.pk)
            return open_session, True
        in_flight = _reusable_sessions(site_id=site_id, email=email).filter(
            status=CheckoutSession.Status.INITIATED, checkout_error="",
            created_at__gte=timezone.now() - timedelta(minutes=1),
        ).order_by("-created_at").first()
        if in_flight is None:
            session = CheckoutSession.objects.create(
                site=site, kind=CheckoutSession.Kind.PURCHASE, status=CheckoutSession.Status.INITIATED,
                customer_name=full_name, customer_email=email, amount=site.purchase_amount, currency=site.currency,
                ip_address=request_context.ip_address, user_agent=request_context.user_agent[:500],
                referrer=request_context.referrer[:500],
            )
            logger.info("checkout session %s initiated for site %s", session.pk, site.pk)
            return session, False
    # Another request for the same buyer is talking to Recurrente right now: wait for it (it holds
    # the session row lock for that call) and reuse its checkout if it got one.
    with transaction.atomic():
        session = CheckoutSession.objects.select_for_update().get(pk=in_flight.pk)
    if session.status == CheckoutSession.Status.CHECKOUT_CREATED:
        return session, True
    return session, False


def checkout_payload(*, session: CheckoutSession, item: dict, success_url: str, cancel_url: str, extra: dict | None = None) -> dict:
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


def purchase_payload(session: CheckoutSession) -> dict:
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


def _checkout_url_trusted(url: str) -> bool:
    origin = settings.SITE_URL if settings.RECURRENTE_SANDBOX else settings.RECURRENTE_CHECKOUT_ORIGIN
    return url.startswith(origin.rstrip("/") + "/")


def checkout_create(*, session_id, payload_builder: Callable[[CheckoutSession], dict]) -> CheckoutSession:
    """Create the Recurrente checkout for an `initiated` session and store its id and URL.

    The session row stays locked during the call so a concurrent duplicate waits for this one.
    Creating a checkout is not idempotent at Recurrente, so it is never retried automatically.
    """
    with transaction.atomic():
        session = CheckoutSession.objects.select_for_update().select_related("site").get(pk=session_id)
        if session.status != CheckoutSession.Status.INITIATED:
            return session
        try:
            result = recurrente_client().create_checkout(payload_builder(session))
            if not _checkout_url_trusted(result["checkout_url"]):
                # We redirect buyers to this URL: only ever to Recurrente (or our own sandbox).
                raise RecurrenteError("Recurrente returned a checkout URL outside its own site")
        except RecurrenteError as exc:
            session.checkout_error = f"{type(exc).__name__}: {exc}"[:2000]
            session.save(update_fields=["checkout_error", "updated_at"])
            logger.warning("checkout session %s: Recurrente checkout failed (%s)", session.pk, type(exc).__name__)
            failed = session
        else:
            session.recurrente_checkout_id = result["id"]
            session.checkout_url = result["checkout_url"]
            session.checkout_created_at = timezone.now()
            # From now on the reconciler asks Recurrente about it until it is paid or expires.
            session.next_reconcile_at = session.checkout_created_at + timedelta(minutes=RECONCILE_FIRST_LOOK_MINUTES)
            session.checkout_error = ""
            session.status = CheckoutSession.Status.CHECKOUT_CREATED
            session.save()
            logger.info("checkout session %s: Recurrente checkout %s created", session.pk, result["id"])
            return session
    raise CheckoutUnavailable(failed)
