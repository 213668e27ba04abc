import logging

from celery import shared_task
from django.utils import timezone

from .models import CheckoutSession
from .sandbox import sandbox_deliver  # noqa: F401  (defined beside the sandbox; imported so workers register it)
from .services import reconcile

logger = logging.getLogger(__name__)


# --- Abandoned checkout recovery (beat: see migration 0004_recovery_periodic_tasks) -----------
@shared_task(acks_late=True)
def check_abandoned_carts() -> dict:
    """Every 5 minutes. Safe when two ticks overlap: rows are claimed in the database, and the
    reminder email is unique per person and site (checkout/services/recovery.py)."""
    from .services.recovery import abandoned_carts_check

    return abandoned_carts_check().summary()


@shared_task(acks_late=True)
def cleanup_old_abandoned_carts() -> dict:
    """Daily at 03:00: expire sessions past the recovery window, drop personal data after 90 days."""
    from .services.recovery import abandoned_carts_cleanup

    return abandoned_carts_cleanup()


# --- Hosting (beat: see migration 0005_hosting_periodic_tasks) -------------------------------
@shared_task(acks_late=True)
def suspend_ended_subscriptions() -> int:
    """Every 15 minutes: a cancelled subscription's site goes offline once its paid period is
    over. Idempotent: each site is suspended (and emailed) once, with its row locked."""
    from .services.subscriptions import subscription_periods_end

    return subscription_periods_end()


@shared_task(acks_late=True)
def send_hosting_nudges() -> int:
    """Hourly: one "activate hosting" email to owners who bought 24 hours ago and never started
    it. Safe when two ticks overlap (sites are claimed with a conditional UPDATE)."""
    from .services.hosting import hosting_nudges_send

    return hosting_nudges_send()


# --- Reconciliation (beat: see migration 0007_reconcile_periodic_task) ------------------------
@shared_task(acks_late=True)
def reconcile_recurrente() -> dict:
    """Every 5 minutes: ask Recurrente about open checkouts (with back-off), live subscriptions
    (daily) and pending refunds, and apply what webhooks missed. Bounded per run; safe to overlap
    (sessions are claimed with a conditional UPDATE, every change goes through idempotent services)."""
    from .services.reconcile import reconcile_pass

    run = reconcile_pass().run
    return {"run": run.pk, "checkouts": run.checkouts_checked, "payments_found": run.payments_found,
            "errors": run.errors}


@shared_task(acks_late=True)
def reconcile_checkout_session(session_id: str) -> str:
    """The success page is waiting: check this one session now, ahead of its schedule."""
    from .services.reconcile import PassStopped, checkout_session_reconcile

    try:
        return checkout_session_reconcile(session_id=session_id, nudge=True)
    except PassStopped as exc:
        logger.warning("session %s: immediate check not possible: %s", session_id, exc)
        return "stopped"


# --- The automatic refund of a payment for a site already sold (services/site_sold.py) ----------
# Waits between tries while Recurrente cannot be reached: about three and a half hours in all.
SITE_SOLD_REFUND_RETRY_SECONDS = (60, 300, 900, 1800, 3600, 7200)


@shared_task(bind=True, acks_late=True, max_retries=len(SITE_SOLD_REFUND_RETRY_SECONDS))
def refund_site_sold_payment(self, payment_id: int) -> str:
    """Start the refund of a payment taken for a site sold a moment before. Safe to run twice:
    the service refunds only a payment that never had a refund asked for. Retried only when the
    request certainly never reached Recurrente; after the last try, staff are told to do it."""
    from celery.exceptions import Reject

    from .services.site_sold import AutoRefund, site_sold_refund_give_up, site_sold_refund_start

    result = site_sold_refund_start(payment_id=payment_id)
    if result.outcome != AutoRefund.RETRY:
        return result.outcome.value
    if self.request.retries >= self.max_retries:
        site_sold_refund_give_up(payment_id=payment_id, detail=f"Recurrente could not be reached after every retry ({result.detail})")
        return "gave_up"
    try:
        self.retry(countdown=SITE_SOLD_REFUND_RETRY_SECONDS[self.request.retries], throw=False)
    except Reject:  # the broker would not take the retry: a person has to start it
        site_sold_refund_give_up(payment_id=payment_id, detail=f"its retry could not be queued ({result.detail})")
        return "gave_up"
    return "retrying"


# --- Asking sooner (services never import tasks: the callers that may enqueue live here) --------
def checkout_reconcile_soon(*, session: CheckoutSession) -> bool:
    """A buyer is waiting for a confirmation (success page, hosting return): check this session
    now rather than on its schedule, since webhooks may never come on test keys. At most every
    15 s per session (the task's claim enforces it; this only spares the broker). A broker that is
    down only means the schedule does it. True if enqueued."""
    recently = session.last_reconciled_at and session.last_reconciled_at >= timezone.now() - reconcile.NUDGE_MIN_INTERVAL
    if session.status not in reconcile.OPEN_STATUSES or session.next_reconcile_at is None or recently:
        return False
    try:
        reconcile_checkout_session.delay(str(session.pk))
    except Exception as exc:  # the page must answer whatever the broker does
        logger.warning("session %s: could not enqueue an immediate check (%s)", session.pk, type(exc).__name__)
        return False
    return True


def hosting_checkouts_reconcile_soon(*, site_id, user_id) -> int:
    """The owner is back from a hosting checkout: check their open hosting checkouts for the site."""
    sessions = CheckoutSession.objects.filter(
        site_id=site_id, user_id=user_id, kind=CheckoutSession.Kind.SUBSCRIPTION, status__in=reconcile.OPEN_STATUSES,
    ).order_by("-created_at")[:3]
    return sum(checkout_reconcile_soon(session=session) for session in sessions)
