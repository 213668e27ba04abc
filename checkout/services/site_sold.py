"""Fair when a site sells: the other buyers of a site that was just sold.

- The sale closes the site's other open purchase checkouts on our side
  (`checkouts_close_for_sold_site`, inside the fulfilment transaction, with the site locked): they
  are never handed out again nor reminded, and their success page and recovery link say the site
  was sold. Recurrente has no call to expire a checkout (only `expires_at`, set at creation), so a
  buyer already on its page can still pay: the status is left alone and the reconciler keeps
  asking about the checkout until it expires.
- A payment that arrives for the sold site from another buyer is recorded and flagged as before
  (payments.py); `site_sold_refund_arrange` then emails that buyer and, once the payment is
  committed, a Celery task starts the refund through the staff refund path
  (`refunds.payment_refund_request`, so every guard against a second refund applies).
  `site_sold_refund_start` refunds only a payment that has never had a refund asked for; what
  certainly never reached Recurrente is tried again by the task, anything else is left to staff.
"""

import enum
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from checkout import emails
from checkout.models import CheckoutSession, Payment, Refund
from checkout.recurrente import RecurrenteError, RecurrenteNotSent
from sites.models import Site
from webmagic.emails import email_alert_staff
from webmagic.money import format_money

from . import refunds

logger = logging.getLogger(__name__)

# What a sale closes: every purchase attempt of the site that could still lead to a payment.
CLOSABLE_STATUSES = (
    CheckoutSession.Status.INITIATED, CheckoutSession.Status.CHECKOUT_CREATED, CheckoutSession.Status.ABANDONED,
)


def checkouts_close_for_sold_site(*, site: Site, sold_session: CheckoutSession) -> list[str]:
    """Close other buyers' open purchase checkouts of the site (recovery checkouts included). Called inside
    the fulfilment transaction with the site locked, so no new attempt can start meanwhile.
    Returns the closed sessions' ids."""
    now = timezone.now()
    others = CheckoutSession.objects.filter(
        site_id=site.pk, kind=CheckoutSession.Kind.PURCHASE, status__in=CLOSABLE_STATUSES, closed_at__isnull=True,
    ).exclude(pk=sold_session.pk).exclude(
        # The new owner's own other attempts are not "sold to someone else": the site cannot be
        # bought again anyway, and a payment on one is the owner paying twice (left to staff).
        customer_email=sold_session.customer_email,
    )
    closed = [str(pk) for pk in others.values_list("pk", flat=True)]
    if closed:
        others.filter(pk__in=closed).update(
            closed_at=now, closed_reason=CheckoutSession.ClosedReason.SITE_SOLD, updated_at=now,
        )
        logger.info("site %s sold through session %s: %s other checkout(s) closed (%s)", site.pk, sold_session.pk,
                    len(closed), ",".join(closed))
    return closed


def site_sold_refund_arrange(*, site: Site, session: CheckoutSession, payment: Payment) -> None:
    """Inside the transaction that recorded a payment for a site already sold to someone else:
    tell the buyer (sent after commit), and start the refund once the payment is committed."""
    emails.site_sold_refund_email_queue(site=site, session=session, payment=payment)
    payment_id = payment.pk
    transaction.on_commit(lambda: _refund_task_enqueue(payment_id=payment_id))


class _Task(Protocol):
    def delay(self, *args: Any) -> Any: ...


# The Celery task is in checkout/tasks.py, which imports the services (services never import
# tasks: no import circle): CheckoutConfig.ready() hands it in.
_refund_task: _Task | None = None


def refund_task_register(task: _Task) -> None:
    global _refund_task
    _refund_task = task


def _refund_task_enqueue(*, payment_id: int) -> None:
    try:
        if _refund_task is None:
            raise RuntimeError("the automatic refund task is not registered (CheckoutConfig.ready)")
        _refund_task.delay(payment_id)
    except Exception as exc:  # the broker is down: a person has to start it
        logger.exception("payment %s: the automatic refund could not be queued", payment_id)
        site_sold_refund_give_up(payment_id=payment_id, detail=f"it could not be queued ({type(exc).__name__})")


# --- The automatic refund ----------------------------------------------------------------------

class AutoRefund(enum.StrEnum):
    STARTED = "started"  # Recurrente accepted the refund (pending or already succeeded)
    NOT_NEEDED = "not_needed"  # refunded, a refund asked for, or its outcome unknown: never a second
    RETRY = "retry"  # certainly nothing happened at Recurrente (unreachable, busy, our cache down)
    FAILED = "failed"  # Recurrente refused, or the outcome is unknown: left to staff, who are told


@dataclass(frozen=True)
class AutoRefundResult:
    outcome: AutoRefund
    detail: str = ""


def _refund_due(payment: Payment) -> bool:
    """Only a payment flagged for refund that has never had one asked for (by anyone, whatever
    came of it) is refunded automatically: anything else is a person's call."""
    return (
        payment.flag == Payment.Flag.NEEDS_REFUND and payment.status == Payment.Status.SUCCEEDED
        and payment.refund_outcome_unknown_since is None and not payment.recurrente_refund_id
        and not payment.refunds.exists()
    )


def _nothing_sent(exc: refunds.RefundFailed) -> bool:
    cause = exc.__cause__
    return isinstance(cause, RecurrenteNotSent) or (isinstance(cause, RecurrenteError) and cause.status == 429)


def site_sold_refund_start(*, payment_id: int) -> AutoRefundResult:
    """Refund a payment taken for a site sold to someone else, through the staff refund path.
    Idempotent: a second run finds the refund (or the unknown outcome) and does nothing."""
    payment = Payment.objects.select_related("site", "checkout_session").get(pk=payment_id)
    if not _refund_due(payment):
        return AutoRefundResult(AutoRefund.NOT_NEEDED)
    try:
        result = refunds.payment_refund_request(payment_id=payment.pk, staff_user=None, source=Refund.Source.SITE_SOLD)
    except refunds.RefundRefused as exc:
        payment.refresh_from_db()
        if not _refund_due(payment):
            return AutoRefundResult(AutoRefund.NOT_NEEDED)  # another request got there first
        return AutoRefundResult(AutoRefund.RETRY, str(exc))  # the cache is down or a request is in flight
    except refunds.RefundFailed as exc:
        if _nothing_sent(exc):
            logger.warning("payment %s: automatic refund not sent (%s); trying again later", payment.pk, exc)
            return AutoRefundResult(AutoRefund.RETRY, str(exc))
        _staff_tell(payment=payment, started=False, detail=str(exc))
        return AutoRefundResult(AutoRefund.FAILED, str(exc))
    except refunds.RefundOutcomeUnknown as exc:
        _staff_tell(payment=payment, started=False, detail=str(exc))
        return AutoRefundResult(AutoRefund.FAILED, str(exc))
    refund = result.refund
    if refund is None or refund.status not in (Refund.Status.PENDING, Refund.Status.SUCCEEDED):
        _staff_tell(payment=payment, started=False, detail=result.message())
        return AutoRefundResult(AutoRefund.FAILED, result.message())
    _staff_tell(payment=payment, started=True, detail=f"refund {refund.recurrente_refund_id} ({refund.status})")
    return AutoRefundResult(AutoRefund.STARTED, refund.recurrente_refund_id)


def site_sold_refund_give_up(*, payment_id: int, detail: str) -> None:
    """The task could not reach Recurrente for long enough (or could not run at all): staff do it."""
    payment = Payment.objects.select_related("site", "checkout_session").get(pk=payment_id)
    if _refund_due(payment):
        _staff_tell(payment=payment, started=False, detail=detail)


def _staff_tell(*, payment: Payment, started: bool, detail: str) -> None:
    """The payment's note (shown in admin) and the staff alert: one alert per payment."""
    note = f"refund started automatically: {detail}" if started else f"automatic refund failed: {detail}"
    with transaction.atomic():
        locked = Payment.objects.select_for_update(of=("self",)).get(pk=payment.pk)
        stamped = f"{note} ({timezone.now():%Y-%m-%d %H:%M} UTC)"
        locked.flag_note = (f"{locked.flag_note}; {stamped}" if locked.flag_note else stamped)[-500:]
        locked.save(update_fields=["flag_note", "updated_at"])
    session = payment.checkout_session
    buyer = f"{session.customer_name} <{session.customer_email}>" if session else "(no checkout session)"
    facts = (
        f"Recurrente confirmed payment {payment.recurrente_payment_id} ({format_money(payment.amount, payment.currency)}) "
        f"for checkout {payment.recurrente_checkout_id}, but site {payment.site.slug} had already been sold to another "
        f"customer a moment before. Buyer: {buyer}; they were emailed that the site was sold and that a full refund "
        "is on its way.\n"
    )
    if started:
        subject = f"Refund started automatically: payment {payment.recurrente_payment_id} for {payment.site.slug}"
        body = facts + (f"The refund was started automatically: {detail}. It shows on the payment in admin; you will be "
                        "told if Recurrente reports it failed.")
    else:
        subject = f"Refund needed: payment {payment.recurrente_payment_id} for {payment.site.slug}"
        body = facts + (f"Starting the refund automatically failed: {detail}\nRefund it from the payment's page in admin "
                        "(or resolve it as the message above says): the buyer is expecting it.")
    email_alert_staff(subject=subject, body=body, dedupe_key=f"needs-refund:{payment.recurrente_payment_id}")
    logger.log(logging.INFO if started else logging.ERROR, "payment %s: %s", payment.recurrente_payment_id, note)
