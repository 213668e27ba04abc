"""Hosting subscriptions: a mirror of Recurrente's state, keyed by `su_…`, that moves the site.

Recurrente's events arrive in any order (`subscription.create` before or after the first
payment, a late retry of an old event after a newer one), so every state change carries the
event's time and is applied only if it is not older than `Subscription.last_event_at`.
Subscription events carry no checkout: we learn `su_…` → our session from the first payment's
`paymentable`, from a payment we already recorded, or from `GET /subscriptions/{id}`.

Emails for hosting changes (activated, payment problem, suspended) belong to the hosting flow
(DESIGN §6) and are not sent from here yet.
"""

import logging
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from checkout.models import CheckoutSession, Payment, Subscription
from checkout.recurrente import RecurrenteNotFound, recurrente_client
from sites.models import Site
from webmagic.emails import email_alert_staff
from webmagic.money import to_cents

from .payments import CheckoutSessionNotFound, Outcome, PaymentConfirmation, payment_metadata_cross_check, payment_row_create

logger = logging.getLogger(__name__)

# Subscription states in which the site is live (past_due stays live while Recurrente retries).
LIVE_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)


def subscription_payment_record(*, confirmation: PaymentConfirmation, session: CheckoutSession | None) -> Outcome:
    """A hosting payment: the first one (from our subscription checkout) or a renewal (its
    `su_…` is already ours). Records the Payment and, unless it is older news, makes the
    subscription active and the site live."""
    subscription = None
    if confirmation.subscription_id:
        subscription = Subscription.objects.filter(recurrente_subscription_id=confirmation.subscription_id).first()
    if session is None and subscription is None:
        raise CheckoutSessionNotFound(
            f"payment {confirmation.payment_id}: neither checkout {confirmation.checkout_id or '(none)'} "
            f"nor subscription {confirmation.subscription_id} is known"
        )
    site_id = subscription.site_id if subscription else session.site_id
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site_id)  # same lock order as purchases
        if Payment.objects.filter(recurrente_payment_id=confirmation.payment_id).exists():
            return Outcome.DUPLICATE
        if session is not None:
            session = CheckoutSession.objects.select_for_update().get(pk=session.pk)
        if confirmation.subscription_id:
            subscription = _subscription_get_or_create(
                subscription_id=confirmation.subscription_id, site=site, session=session,
            )
        else:
            logger.warning("hosting payment %s names no subscription; waiting for subscription.create", confirmation.payment_id)

        expected_amount = session.amount if session else subscription.amount
        expected_currency = session.currency if session else subscription.currency
        mismatch = (
            confirmation.amount_cents != to_cents(expected_amount)
            or confirmation.currency.upper() != expected_currency.upper()
        )
        user = (subscription.user if subscription else None) or (session.user if session else None) or site.owner
        payment = payment_row_create(
            confirmation=confirmation, kind=Payment.Kind.SUBSCRIPTION, site=site, session=session, user=user,
            subscription=subscription,
            flag=Payment.Flag.AMOUNT_MISMATCH if mismatch else Payment.Flag.NONE,
            flag_note=(
                f"paid {confirmation.amount_cents} {confirmation.currency}, expected {to_cents(expected_amount)} {expected_currency}"
                if mismatch else ""
            ),
        )
        if payment is None:
            return Outcome.DUPLICATE
        if mismatch:
            logger.error("hosting payment %s: amount mismatch (%s)", payment.recurrente_payment_id, payment.flag_note)
            email_alert_staff(
                subject=f"Hosting payment {payment.recurrente_payment_id} has the wrong amount",
                body=(
                    f"Recurrente confirmed hosting payment {payment.recurrente_payment_id} for site {site.slug} "
                    f"(subscription {confirmation.subscription_id or 'unknown'}): {payment.flag_note}. "
                    "The subscription was not activated by this payment; check it in Recurrente."
                ),
                dedupe_key=f"amount-mismatch:{payment.recurrente_payment_id}",
            )
            return Outcome.AMOUNT_MISMATCH
        if session is not None and session.status != CheckoutSession.Status.COMPLETED:
            _session_complete(session=session, user=user)
        if session is not None:
            payment_metadata_cross_check(session=session, confirmation=confirmation)
        if subscription is not None:
            _subscription_apply(subscription=subscription, site=site, status=Subscription.Status.ACTIVE, event_at=confirmation.paid_at)
        logger.info(
            "hosting payment %s recorded for site %s (subscription %s)",
            payment.recurrente_payment_id, site.pk, confirmation.subscription_id or "-",
        )
    return Outcome.SUBSCRIPTION_PAYMENT


def subscription_status_record(
    *, subscription_id: str, status: str, event_at: datetime | None = None, payment_id: str = ""
) -> Outcome:
    """Apply a subscription event (`subscription.create`, `.past_due`, `.pause`, …) as the state
    `status`, unless a newer event was already applied."""
    subscription = Subscription.objects.filter(recurrente_subscription_id=subscription_id).first()
    session = None
    details: dict = {}
    if subscription is None:
        session, details = _subscription_origin_find(subscription_id=subscription_id, payment_id=payment_id)
        if session is None:
            return Outcome.UNKNOWN_SUBSCRIPTION
    site_id = subscription.site_id if subscription else session.site_id
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site_id)
        if subscription is None:
            session = CheckoutSession.objects.select_for_update().get(pk=session.pk)
            subscription = _subscription_get_or_create(subscription_id=subscription_id, site=site, session=session)
        else:
            subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
        _subscription_fill_period(subscription=subscription, details=details)
        if payment_id:
            # A first payment that named no subscription was recorded unlinked; link it now.
            Payment.objects.filter(
                recurrente_payment_id=payment_id, kind=Payment.Kind.SUBSCRIPTION, site_id=site.pk, subscription__isnull=True
            ).update(subscription=subscription, updated_at=timezone.now())
        applied = _subscription_apply(subscription=subscription, site=site, status=status, event_at=event_at)
        if applied and status == Subscription.Status.ACTIVE and session is not None and session.status != CheckoutSession.Status.COMPLETED:
            # Recurrente only creates a subscription once its first charge went through.
            _session_complete(session=session, user=subscription.user)
    return Outcome.RECORDED if applied else Outcome.STALE


# --- Internals -----------------------------------------------------------------------------------

def _subscription_origin_find(*, subscription_id: str, payment_id: str) -> tuple[CheckoutSession | None, dict]:
    """Which of our hosting checkouts started this subscription. A payment we already recorded
    answers without a network call; otherwise Recurrente's API does (subscription.* events name
    no checkout)."""
    if payment_id:
        payment = Payment.objects.select_related("checkout_session").filter(recurrente_payment_id=payment_id).first()
        if payment and payment.checkout_session and payment.checkout_session.kind == CheckoutSession.Kind.SUBSCRIPTION:
            return payment.checkout_session, {}
    try:
        # Outside any transaction: no row is locked while we wait on the network. Unavailable
        # errors propagate, so the event fails and is retried later.
        details = recurrente_client().get_subscription(subscription_id)
    except RecurrenteNotFound:
        logger.warning("subscription %s: Recurrente does not know it; ignored", subscription_id)
        return None, {}
    checkout = details.get("checkout") if isinstance(details.get("checkout"), dict) else {}
    checkout_id = checkout.get("id") if isinstance(checkout.get("id"), str) else ""
    session = None
    if checkout_id:
        session = CheckoutSession.objects.filter(recurrente_checkout_id=checkout_id, kind=CheckoutSession.Kind.SUBSCRIPTION).first()
    if session is None:
        logger.warning("subscription %s: checkout %s is not one of our hosting checkouts; ignored", subscription_id, checkout_id or "-")
    return session, details


def _subscription_get_or_create(*, subscription_id: str, site: Site, session: CheckoutSession | None) -> Subscription:
    subscription = Subscription.objects.select_for_update().filter(recurrente_subscription_id=subscription_id).first()
    if subscription is not None:
        if session is not None and subscription.checkout_session_id is None:
            subscription.checkout_session = session
            subscription.save(update_fields=["checkout_session", "updated_at"])
        return subscription
    try:
        with transaction.atomic():
            return Subscription.objects.create(
                recurrente_subscription_id=subscription_id, site=site, checkout_session=session,
                user=(session.user if session else None) or site.owner,
                amount=session.amount if session else site.monthly_amount,
                currency=session.currency if session else site.currency,
                status=Subscription.Status.PENDING,
            )
    except IntegrityError:
        return Subscription.objects.select_for_update().get(recurrente_subscription_id=subscription_id)


def _subscription_fill_period(*, subscription: Subscription, details: dict) -> None:
    fields = []
    for name in ("current_period_start", "current_period_end"):
        value = details.get(name)
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed and getattr(subscription, name) is None:
            setattr(subscription, name, parsed)
            fields.append(name)
    if fields:
        subscription.save(update_fields=[*fields, "updated_at"])


def _subscription_apply(*, subscription: Subscription, site: Site, status: str, event_at: datetime | None) -> bool:
    """Set the status unless this news is older than what we already applied; move the site."""
    if event_at and subscription.last_event_at and event_at < subscription.last_event_at:
        logger.info(
            "subscription %s: %s event from %s is older than %s; not applied",
            subscription.recurrente_subscription_id, status, event_at.isoformat(), subscription.last_event_at.isoformat(),
        )
        return False
    subscription.status = status
    fields = ["status", "updated_at"]
    if event_at:
        subscription.last_event_at = event_at
        fields.append("last_event_at")
    if status == Subscription.Status.CANCELLED and subscription.cancelled_at is None:
        subscription.cancelled_at = event_at or timezone.now()
        fields.append("cancelled_at")
    subscription.save(update_fields=fields)
    _site_follow_subscription(site=site, subscription=subscription)
    logger.info("subscription %s is now %s (site %s)", subscription.recurrente_subscription_id, status, site.pk)
    return True


def _site_follow_subscription(*, site: Site, subscription: Subscription) -> None:
    now = timezone.now()
    if subscription.status == Subscription.Status.ACTIVE:
        if site.status == Site.Status.PREVIEW:
            # Hosting is only sold to owners; a live subscription on an unsold site needs a person.
            logger.error("subscription %s is active but site %s is still a preview", subscription.recurrente_subscription_id, site.pk)
            email_alert_staff(
                subject=f"Hosting subscription {subscription.recurrente_subscription_id} on unsold site {site.slug}",
                body=f"Subscription {subscription.recurrente_subscription_id} is active but site {site.slug} is still a preview. "
                "Check who paid and fix the site in admin.",
                dedupe_key=f"subscription-on-preview:{subscription.recurrente_subscription_id}",
            )
            return
        if site.status in (Site.Status.OWNED, Site.Status.SUSPENDED):
            site.status = Site.Status.ACTIVE
            site.activated_at = now
            site.suspended_at = None
            site.save(update_fields=["status", "activated_at", "suspended_at", "updated_at"])
        return
    if subscription.status in (Subscription.Status.PAUSED, Subscription.Status.CANCELLED) and site.status == Site.Status.ACTIVE:
        if site.subscriptions.exclude(pk=subscription.pk).filter(status__in=LIVE_STATUSES).exists():
            return  # an old subscription ending does not take down the one that replaced it
        if (
            subscription.status == Subscription.Status.CANCELLED
            and subscription.current_period_end
            and subscription.current_period_end > now
        ):
            return  # paid until the end of the period: the site stays live until then
        site.status = Site.Status.SUSPENDED
        site.suspended_at = now
        site.save(update_fields=["status", "suspended_at", "updated_at"])


def _session_complete(*, session: CheckoutSession, user) -> None:
    session.status = CheckoutSession.Status.COMPLETED
    session.completed_at = timezone.now()
    fields = ["status", "completed_at", "updated_at"]
    if user is not None and session.user_id is None:
        session.user = user
        fields.append("user")
    session.save(update_fields=fields)
