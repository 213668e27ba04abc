"""Hosting subscriptions: a mirror of Recurrente's state, keyed by `su_…`, that moves the site.

Recurrente's events arrive in any order (`subscription.create` before or after the first
payment, a late retry of an old event after a newer one), so every state change carries the
event's time and is applied only if it is not older than `Subscription.last_event_at`.
Subscription events carry no checkout: we learn `su_…` → our session from the first payment's
`paymentable`, from a payment we already recorded, or from `GET /subscriptions/{id}`.

The site follows the subscription (DESIGN §6), always with the site row locked: active → site
live; past_due → still live, the owner is warned; paused → suspended; cancelled → live until the
paid period ends (the periodic `subscription_periods_end` suspends it then), or at once when
nothing was paid for the current period; unable_to_start → the site stays owned. Each email is
queued only on an actual transition, inside the transaction that made it, and carries a dedupe
key, so a duplicate or re-processed event never sends a second one.

There is deliberately no database constraint "one open subscription per site": this table
mirrors Recurrente, and Recurrente can have two live subscriptions for one site (an old paused
one unpaused after a new one started). A constraint would make such an event fail forever
instead of recording the money; we record it and tell staff (double billing) instead. Starting a
second subscription from our own portal is prevented in checkout/services/hosting.py.
"""

import logging
from datetime import datetime
from typing import cast

from dateutil.relativedelta import relativedelta
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from checkout import emails
from checkout.clients import recurrente_client
from checkout.ledger import (
    CheckoutSessionNotFound,
    Outcome,
    PaymentConfirmation,
    checkout_session_complete,
    payment_metadata_cross_check,
    payment_row_create,
)
from checkout.models import CheckoutSession, Payment, Subscription
from checkout.recurrente import JsonObject, RecurrenteError, RecurrenteNotFound, recurrente_time
from customers.models import CustomerUser
from sites.models import Site
from sites.services import site_activate, site_suspend
from webmagic.emails import email_alert_staff
from webmagic.money import to_cents

logger = logging.getLogger(__name__)

# Subscription states in which the site is live (past_due stays live while Recurrente retries).
LIVE_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)

# Recurrente's `status` values (GET /subscriptions/{id}) as ours.
API_STATUSES = {
    "active": Subscription.Status.ACTIVE,
    "past_due": Subscription.Status.PAST_DUE,
    "paused": Subscription.Status.PAUSED,
    "cancelled": Subscription.Status.CANCELLED,
    "canceled": Subscription.Status.CANCELLED,
    "unable_to_start": Subscription.Status.UNABLE_TO_START,
}


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
    # cast (here and below): with no session there is a subscription (refused above otherwise).
    site_id = subscription.site_id if subscription else cast(CheckoutSession, session).site_id
    renewal = subscription is not None and _is_renewal(subscription=subscription, session=session)
    # Asked before any row is locked (never hold a lock during an HTTP call).
    period_end = _renewal_period_end_fetch(subscription=cast(Subscription, subscription)) if renewal else None
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

        expected_amount = session.amount if session else cast(Subscription, subscription).amount
        expected_currency = session.currency if session else cast(Subscription, subscription).currency
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
            checkout_session_complete(session=session, user=user)
        if session is not None:
            payment_metadata_cross_check(session=session, confirmation=confirmation)
        if subscription is not None:
            if renewal:
                _subscription_extend_period(subscription=subscription, period_end=period_end, paid_at=payment.paid_at)
            elif subscription.current_period_end is None:
                # The first payment came before subscription.create (no API call made): until
                # Recurrente tells us, the paid period is the one month this payment bought.
                subscription.current_period_start = payment.paid_at
                subscription.current_period_end = payment.paid_at + relativedelta(months=1)
                subscription.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
            # A charge is the clearest sign Recurrente bills it: it ends an older cancellation.
            _subscription_apply(
                subscription=subscription, site=site, status=Subscription.Status.ACTIVE, event_at=confirmation.paid_at, resumes=True,
            )
        logger.info(
            "hosting payment %s recorded for site %s (subscription %s)",
            payment.recurrente_payment_id, site.pk, confirmation.subscription_id or "-",
        )
    return Outcome.SUBSCRIPTION_PAYMENT


def subscription_status_record(
    *, subscription_id: str, status: str, event_at: datetime | None = None, payment_id: str = "", resumes: bool = False
) -> Outcome:
    """Apply a subscription event (`subscription.create`, `.past_due`, `.pause`, …) as the state
    `status`, unless a newer event was already applied. `resumes`: the event says billing resumed
    (`reactivate`, `unpause`), which ends an older cancellation."""
    subscription = Subscription.objects.filter(recurrente_subscription_id=subscription_id).first()
    session = None
    details: JsonObject = {}
    if subscription is None:
        session, details = _subscription_origin_find(subscription_id=subscription_id, payment_id=payment_id)
        if session is None:
            return Outcome.UNKNOWN_SUBSCRIPTION
        if API_STATUSES.get(str(details.get("status", ""))) == Subscription.Status.UNABLE_TO_START:
            # Recurrente already knows the first charge failed: never put the site live for it.
            status = Subscription.Status.UNABLE_TO_START
    # cast (here and below): with no subscription there is a session (answered above otherwise).
    site_id = subscription.site_id if subscription else cast(CheckoutSession, session).site_id
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site_id)
        if subscription is None:
            session = CheckoutSession.objects.select_for_update().get(pk=cast(CheckoutSession, session).pk)
            subscription = _subscription_get_or_create(subscription_id=subscription_id, site=site, session=session)
        else:
            subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
        _subscription_fill_period(subscription=subscription, details=details)
        if payment_id:
            # A first payment that named no subscription was recorded unlinked; link it now.
            Payment.objects.filter(
                recurrente_payment_id=payment_id, kind=Payment.Kind.SUBSCRIPTION, site_id=site.pk, subscription__isnull=True
            ).update(subscription=subscription, updated_at=timezone.now())
        applied = _subscription_apply(subscription=subscription, site=site, status=status, event_at=event_at, resumes=resumes)
        if applied and status == Subscription.Status.ACTIVE and session is not None and session.status != CheckoutSession.Status.COMPLETED:
            # Recurrente only creates a subscription once its first charge went through.
            checkout_session_complete(session=session, user=subscription.user)
    return Outcome.RECORDED if applied else Outcome.STALE


def subscription_refresh(*, subscription_id: str, event_at: datetime | None = None) -> Outcome:
    """`subscription.update` (and anything else that only says "something changed"), and the
    reconciler's daily look: read the state from Recurrente's API before locking the site, and apply it
    like an event of that time. Without an event, the time is the subscription's `updated_at` at
    Recurrente (its clock, like the events'), or else when we asked, so an event older than that
    state never overwrites it, and a newer one still applies."""
    asked_at = timezone.now()
    try:
        details = recurrente_client().get_subscription(subscription_id)
    except RecurrenteNotFound:
        logger.warning("subscription %s: Recurrente does not know it; update ignored", subscription_id)
        return Outcome.UNKNOWN_SUBSCRIPTION
    # Without `updated_at` (its shape is unverified) the answer is the state as of when we asked:
    # an event older than that must not overwrite it, and one applied meanwhile must not be undone.
    event_at = event_at or recurrente_time(details.get("updated_at")) or asked_at
    status = API_STATUSES.get(str(details.get("status", "")))
    if status is None:
        logger.warning("subscription %s: unknown status %r from Recurrente; ignored", subscription_id, str(details.get("status"))[:40])
        return Outcome.UNKNOWN_SUBSCRIPTION
    subscription = Subscription.objects.filter(recurrente_subscription_id=subscription_id).first()
    if subscription is not None:
        with transaction.atomic():
            # Site before subscription, the order every other path takes, so two events for one
            # subscription processed at once wait for each other instead of deadlocking.
            Site.objects.select_for_update().get(pk=subscription.site_id)
            subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
            _subscription_extend_period(subscription=subscription, period_end=recurrente_time(details.get("current_period_end")))
    return subscription_status_record(subscription_id=subscription_id, status=status, event_at=event_at)


def subscription_periods_end(*, now: datetime | None = None, limit: int = 500) -> int:
    """Periodic: subscriptions that were cancelled (in the portal, or by Recurrente) keep the site
    live until the paid period ends; after it, suspend the site once and tell the owner.
    Returns how many sites were suspended. Safe to run twice at once: every change is made with
    the site locked and re-checked."""
    now = now or timezone.now()
    due = list(
        Subscription.objects.filter(current_period_end__lte=now, site__status=Site.Status.ACTIVE)
        .filter(Q(cancel_requested_at__isnull=False) | Q(status=Subscription.Status.CANCELLED))
        .order_by("current_period_end").values_list("pk", flat=True)[:limit]
    )
    suspended = 0
    for subscription_pk in due:
        with transaction.atomic():
            subscription = Subscription.objects.filter(pk=subscription_pk).first()
            if subscription is None:
                continue
            site = Site.objects.select_for_update().get(pk=subscription.site_id)
            subscription = Subscription.objects.select_for_update().get(pk=subscription_pk)
            if subscription_period_end_apply(subscription=subscription, site=site, now=now):
                suspended += 1
    if due:
        logger.info("hosting periods ended: %s subscription(s) looked at, %s site(s) suspended", len(due), suspended)
    return suspended


def subscription_period_end_apply(*, subscription: Subscription, site: Site, now: datetime) -> bool:
    """With the site and subscription locked: if this cancelled subscription's paid period is
    over, it is cancelled for good and the site is suspended (unless another subscription pays
    for it). True if the site was suspended now."""
    if subscription.current_period_end is None or subscription.current_period_end > now:
        return False
    if subscription.cancel_requested_at is None and subscription.status != Subscription.Status.CANCELLED:
        return False
    if subscription.status != Subscription.Status.CANCELLED:
        # We cancelled it at Recurrente (DELETE answered OK) and the period is over; whether or
        # not its subscription.cancel webhook ever comes, the mirror says what is true now.
        subscription.status = Subscription.Status.CANCELLED
        # Dated when the owner asked, not when this job ran: news from Recurrente newer than the
        # request (a reactivation delivered late) must still be able to undo it.
        subscription.cancelled_at = subscription.cancelled_at or subscription.cancel_requested_at or now
        subscription.cancellation_inferred = True
        subscription.save(update_fields=["status", "cancelled_at", "cancellation_inferred", "updated_at"])
    if site.status != Site.Status.ACTIVE or _site_paid_by_another(site=site, subscription=subscription, now=now):
        return False
    _site_suspend(site=site, subscription=subscription, reason="ended", occasion=f"end:{subscription.current_period_end.isoformat()}")
    return True


# --- Internals -----------------------------------------------------------------------------------

def _subscription_origin_find(*, subscription_id: str, payment_id: str) -> tuple[CheckoutSession | None, JsonObject]:
    """Which of our hosting checkouts started this subscription. A payment we already recorded
    answers without a network call; otherwise Recurrente's API does (subscription.* events name
    no checkout)."""
    if payment_id:
        payment = Payment.objects.select_related("checkout_session").filter(recurrente_payment_id=payment_id).first()
        if payment and payment.checkout_session and payment.checkout_session.kind == CheckoutSession.Kind.SUBSCRIPTION:
            return payment.checkout_session, {}
    try:
        # Before any site or subscription row is locked (a webhook's processing transaction holds
        # only its own event row meanwhile), so no purchase waits on the network. Unavailable
        # errors propagate, so the event fails and is retried later.
        details = recurrente_client().get_subscription(subscription_id)
    except RecurrenteNotFound:
        logger.warning("subscription %s: Recurrente does not know it; ignored", subscription_id)
        return None, {}
    checkout = details["checkout"] if isinstance(details.get("checkout"), dict) else {}
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


def _subscription_fill_period(*, subscription: Subscription, details: JsonObject) -> None:
    fields = []
    for name in ("current_period_start", "current_period_end"):
        value = details.get(name)
        parsed = recurrente_time(value)
        if parsed and getattr(subscription, name) is None:
            setattr(subscription, name, parsed)
            fields.append(name)
    if fields:
        subscription.save(update_fields=[*fields, "updated_at"])


def _subscription_apply(
    *, subscription: Subscription, site: Site, status: str, event_at: datetime | None, resumes: bool = False
) -> bool:
    """Set the status unless this news is older than what we already applied; move the site.
    `resumes`: the news is a sign billing resumed (a reactivate or unpause event, a charge)."""
    if event_at and subscription.last_event_at and event_at < subscription.last_event_at:
        if _late_resumption_ends_cancellation(subscription=subscription, status=status, event_at=event_at, resumes=resumes):
            return True
        logger.info(
            "subscription %s: %s event from %s is older than %s; not applied",
            subscription.recurrente_subscription_id, status, event_at.isoformat(), subscription.last_event_at.isoformat(),
        )
        return False
    undone = _cancellation_undone(subscription=subscription, status=status, event_at=event_at, resumes=resumes)
    if subscription.status == Subscription.Status.CANCELLED and status != Subscription.Status.CANCELLED and not undone:
        # Cancellation is final unless there is evidence it ended (see _cancellation_undone): a
        # replayed or late older event (a reprocessed subscription.create, say), or a plain
        # "active" read after the period end cancelled it, must not put the site back live.
        logger.info(
            "subscription %s: %s news from %s does not undo its cancellation of %s",
            subscription.recurrente_subscription_id, status, event_at.isoformat() if event_at else "(no time)",
            subscription.cancelled_at.isoformat() if subscription.cancelled_at else "-",
        )
        return False
    previous = subscription.status
    subscription.status = status
    fields = ["status", "updated_at"]
    if event_at:
        subscription.last_event_at = event_at
        fields.append("last_event_at")
    if undone:
        # cast: a cancellation is only undone by news with a time (_cancellation_undone).
        _cancellation_clear(subscription=subscription, status=status, event_at=cast(datetime, event_at))
        fields += ["cancel_requested_at", "cancelled_at", "reactivated_at", "cancellation_inferred"]
    elif status == Subscription.Status.CANCELLED and subscription.cancellation_inferred:
        subscription.cancellation_inferred = False  # Recurrente confirmed what the period end assumed
        fields.append("cancellation_inferred")
    if status == Subscription.Status.CANCELLED and subscription.cancelled_at is None:
        subscription.cancelled_at = event_at or timezone.now()
        fields.append("cancelled_at")
    subscription.save(update_fields=fields)
    # The occasion names this change in email dedupe keys: a redelivery of the same event (same
    # time) is the same occasion, a later pause or unpause is a new one.
    occasion = (event_at or timezone.now()).isoformat()
    _site_follow_subscription(site=site, subscription=subscription, previous=previous, occasion=occasion)
    logger.info("subscription %s is now %s (site %s)", subscription.recurrente_subscription_id, status, site.pk)
    return True


def _late_resumption_ends_cancellation(*, subscription: Subscription, status: str, event_at: datetime, resumes: bool) -> bool:
    """A reactivation delivered after newer news (a plain "active" read, say) still ends an older
    cancellation, as long as that newer news did not say cancelled. The status it set stays."""
    if subscription.status == Subscription.Status.CANCELLED:
        return False  # the newer news is a cancellation: it supersedes this resumption
    if not _cancellation_undone(subscription=subscription, status=status, event_at=event_at, resumes=resumes):
        return False
    _cancellation_clear(subscription=subscription, status=status, event_at=event_at)
    subscription.save(update_fields=["cancel_requested_at", "cancelled_at", "reactivated_at", "cancellation_inferred", "updated_at"])
    return True


def _cancellation_clear(*, subscription: Subscription, status: str, event_at: datetime) -> None:
    # Recurrente said, after our cancellation, that billing resumed: the period end must not
    # cancel it again while Recurrente bills.
    logger.warning(
        "subscription %s: %s at %s is newer than its cancellation (requested %s, cancelled %s); cancellation cleared",
        subscription.recurrente_subscription_id, status, event_at.isoformat(),
        subscription.cancel_requested_at.isoformat() if subscription.cancel_requested_at else "-",
        subscription.cancelled_at.isoformat() if subscription.cancelled_at else "-",
    )
    subscription.cancel_requested_at = None
    subscription.cancelled_at = None
    subscription.cancellation_inferred = False
    subscription.reactivated_at = event_at


def _cancellation_undone(*, subscription: Subscription, status: str, event_at: datetime | None, resumes: bool) -> bool:
    """Newer provider state wins, on evidence: Recurrente moved the subscription out of
    `cancelled`, or said billing resumed (reactivate, unpause, a charge), at a time after every
    cancellation we know of (the owner's from the portal, Recurrente's own). A plain "active"
    read after a portal cancel is not evidence: Recurrente may keep a cancelled subscription
    active until its period ends. News without a time never undoes a cancellation."""
    if status == Subscription.Status.CANCELLED or event_at is None:
        return False
    # "Cancelled" counts only when Recurrente said so; the period-end job's own inference does not.
    reported_cancelled = subscription.status == Subscription.Status.CANCELLED and not subscription.cancellation_inferred
    if not (resumes or reported_cancelled):
        return False
    cancellations = [at for at in (subscription.cancel_requested_at, subscription.cancelled_at) if at is not None]
    return bool(cancellations) and all(event_at > at for at in cancellations)


def _site_follow_subscription(*, site: Site, subscription: Subscription, previous: str, occasion: str) -> None:
    now = timezone.now()
    status = subscription.status
    if status == Subscription.Status.ACTIVE:
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
            _site_activate(site=site, subscription=subscription, occasion=occasion)
        elif previous != Subscription.Status.ACTIVE:
            _double_billing_check(site=site, subscription=subscription, now=now)
        return
    if status == Subscription.Status.PAST_DUE:
        if previous != Subscription.Status.PAST_DUE and site.status == Site.Status.ACTIVE:
            emails.payment_problem_email_queue(
                site=site, subscription=subscription, occasion=occasion, portal_path=portal_site_path(site.slug),
            )
        return
    if status == Subscription.Status.UNABLE_TO_START:
        # The first charge never went through: nothing was bought, the site stays as it is (owned).
        logger.info("subscription %s could not start; site %s stays %s", subscription.recurrente_subscription_id, site.pk, site.status)
        return
    if status not in (Subscription.Status.PAUSED, Subscription.Status.CANCELLED) or site.status != Site.Status.ACTIVE:
        return
    if _site_paid_by_another(site=site, subscription=subscription, now=now):
        return  # an old subscription ending does not take down the one that replaced it
    if (
        status == Subscription.Status.CANCELLED
        and subscription.current_period_end
        and subscription.current_period_end > now
        and previous != Subscription.Status.PAST_DUE
    ):
        # Paid until the end of the period: the site stays live until then, and the periodic
        # subscription_periods_end suspends it after. (A cancellation after failed renewal
        # charges, from past_due, has nothing paid for this period: it suspends now.)
        emails.hosting_cancelled_email_queue(site=site, subscription=subscription, portal_path=portal_site_path(site.slug))
        return
    reason = "paused" if status == Subscription.Status.PAUSED else "cancelled"
    _site_suspend(site=site, subscription=subscription, reason=reason, occasion=occasion)


def _site_paid_by_another(*, site: Site, subscription: Subscription, now: datetime) -> bool:
    """Does another subscription of this site still pay for hosting right now?"""
    return site.subscriptions.exclude(pk=subscription.pk).filter(
        Q(status__in=LIVE_STATUSES, cancel_requested_at__isnull=True)
        | Q(status__in=LIVE_STATUSES, current_period_end__gt=now)
        | Q(status=Subscription.Status.CANCELLED, current_period_end__gt=now)
    ).exists()


def _site_activate(*, site: Site, subscription: Subscription, occasion: str) -> None:
    reactivation = site.status == Site.Status.SUSPENDED
    site_activate(site=site)
    logger.info("site %s is live (subscription %s)", site.pk, subscription.recurrente_subscription_id)
    emails.hosting_activated_email_queue(
        site=site, subscription=subscription, reactivation=reactivation, occasion=occasion,
        portal_path=portal_site_path(site.slug),
    )


def _site_suspend(*, site: Site, subscription: Subscription, reason: str, occasion: str) -> None:
    site_suspend(site=site)
    logger.info("site %s suspended: subscription %s %s", site.pk, subscription.recurrente_subscription_id, reason)
    emails.hosting_suspended_email_queue(
        site=site, subscription=subscription, reason=reason, occasion=occasion, portal_path=portal_site_path(site.slug),
    )


def _double_billing_check(*, site: Site, subscription: Subscription, now: datetime) -> None:
    if not _site_paid_by_another(site=site, subscription=subscription, now=now):
        return
    others = list(
        site.subscriptions.exclude(pk=subscription.pk).filter(status__in=LIVE_STATUSES)
        .values_list("recurrente_subscription_id", flat=True)
    )
    logger.error("site %s has more than one paying subscription: %s and %s", site.pk, subscription.recurrente_subscription_id, others)
    email_alert_staff(
        subject=f"Site {site.slug} is billed by two hosting subscriptions",
        body=(
            f"Subscription {subscription.recurrente_subscription_id} became active for site {site.slug} while "
            f"{', '.join(others) or 'another subscription'} still pays for it. The owner is probably charged twice: "
            "cancel one of them in admin (Subscriptions) and refund if needed."
        ),
        dedupe_key=f"double-subscription:{site.pk}:{subscription.pk}",
    )


def subscription_transfer_objection(site: Site) -> str | None:
    """Why `site` may not change owner now (sites' ownership transfer asks; registered in
    CheckoutConfig.ready): a subscription still billing is paid by the current owner's card at
    Recurrente and cannot be moved to someone else's. Moving the row would have the old owner pay
    for a site they no longer see (and can no longer cancel from the portal). Cancel hosting
    first (the site stays live until the paid period ends); the new owner starts their own."""
    billing = (
        Subscription.objects.filter(
            site_id=site.pk, cancel_requested_at__isnull=True,
            status__in=[Subscription.Status.PENDING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE,
                        Subscription.Status.PAUSED],
        ).values_list("recurrente_subscription_id", flat=True).first()
    )
    if not billing:
        return None
    return (
        # cast: a bought site has an owner (the site_sold_has_owner constraint), and only bought sites change hands.
        f"{site.slug} has hosting subscription {billing} billed to {cast(CustomerUser, site.owner).email}. Cancel it first "
        "(the site stays live until the paid period ends); the new owner then starts their own hosting."
    )


def portal_site_path(slug: str) -> str:
    """The owner's page for one site in the portal: where hosting is managed."""
    return reverse("portal:site", kwargs={"slug": slug})


def _is_renewal(*, subscription: Subscription, session: CheckoutSession | None) -> bool:
    """A payment for a subscription we already know that is not its first payment."""
    if session is not None and session.status != CheckoutSession.Status.COMPLETED:
        return False
    return subscription.payments.exists()


def _renewal_period_end_fetch(*, subscription: Subscription) -> datetime | None:
    try:
        details = recurrente_client().get_subscription(subscription.recurrente_subscription_id)
    except RecurrenteError as exc:
        # The payment must be recorded anyway; the period is then estimated (one month on).
        logger.warning(
            "subscription %s: could not read its period after a renewal (%s)", subscription.recurrente_subscription_id, type(exc).__name__
        )
        return None
    return recurrente_time(details.get("current_period_end"))


def _subscription_extend_period(
    *, subscription: Subscription, period_end: datetime | None, paid_at: datetime | None = None
) -> None:
    """Move current_period_end forward (never back): to what Recurrente says, or, when it could
    not say, one month past the period this renewal paid for."""
    if period_end is None and paid_at is not None and subscription.current_period_end is not None:
        base = subscription.current_period_end
        if paid_at >= base - relativedelta(days=7):  # a renewal is charged at the end of its period
            period_end = base + relativedelta(months=1)
    if period_end is None or (subscription.current_period_end and period_end <= subscription.current_period_end):
        return
    previous_end = subscription.current_period_end
    subscription.current_period_end = period_end
    fields = ["current_period_end", "updated_at"]
    if previous_end is not None:
        subscription.current_period_start = previous_end
        fields.append("current_period_start")
    subscription.save(update_fields=fields)
    logger.info("subscription %s paid until %s", subscription.recurrente_subscription_id, period_end.isoformat())
