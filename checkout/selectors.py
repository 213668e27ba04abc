import uuid
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from checkout.models import CheckoutSession, Payment
from webmagic.models import EmailLog


def session_for_success_page(*, raw_id: str | None) -> CheckoutSession | None:
    """The purchase session named in a success link; None for malformed or unknown ids.

    Session ids are random UUIDs, so the link itself is the capability; nothing else is looked up.
    """
    try:
        session_id = uuid.UUID(str(raw_id))
    except ValueError:
        return None
    return (
        CheckoutSession.objects.select_related("site")
        .filter(pk=session_id, kind=CheckoutSession.Kind.PURCHASE)
        .first()
    )


def payment_state(session: CheckoutSession) -> str:
    """What the buyer should be told about their payment:

    - confirmed: paid, and the site is theirs (fulfilment links the session to their account);
    - refund: paid, but the site had been sold a moment before (the payment awaits a refund);
    - review: a payment arrived that we could not accept as is (wrong amount): staff check it;
    - site_sold: no payment yet, but the site was sold to someone else meanwhile (the checkout is
      closed; a payment that still arrives is refunded automatically);
    - in_progress: a bank transfer has started; confirming: nothing confirmed yet.
    """
    if session.status == CheckoutSession.Status.COMPLETED:
        # Only a fulfilled purchase links the session to the buyer's account; a completed session
        # without one is a payment for a site that was no longer for sale.
        return "confirmed" if session.user_id else "refund"
    if session.closed_reason == CheckoutSession.ClosedReason.SITE_SOLD:
        return "site_sold"
    if session.payment_in_progress_at:
        return "in_progress"
    if Payment.objects.filter(checkout_session=session).exclude(flag=Payment.Flag.NONE).exists():
        return "review"
    return "confirming"


# --- Funnel metrics (staff) --------------------------------------------------------------------
def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def recovered_q(prefix: str = "") -> Q:
    """Completed sessions the recovery email brought back: a late completion of a reminded
    session, or a discounted checkout made from its recovery link. `prefix` reaches a session
    through a relation (e.g. "checkout_session__" from a payment)."""
    return Q(**{f"{prefix}status": CheckoutSession.Status.COMPLETED}) & (
        Q(**{f"{prefix}reminder_sent_at__isnull": False}) | Q(**{f"{prefix}recovered_from__isnull": False})
    )


def funnel_metrics(*, start, end) -> dict:
    """Purchase funnel for sessions created in [start, end), in three aggregate queries.

    Definitions (staff read these on the page):
    - started: purchase attempts, not counting checkouts created from a recovery link;
    - checkouts created: attempts that reached Recurrente;
    - completed: purchases paid (attempts and recovery checkouts);
    - abandoned: attempts that got (or were claimed for) a reminder;
    - recovered: after a reminder, the original session completed late or its recovery checkout did;
    - revenue: succeeded purchase payments (not refunded) paid in the range.
    """
    sessions = CheckoutSession.objects.filter(kind=CheckoutSession.Kind.PURCHASE, created_at__gte=start, created_at__lt=end)
    completed = Q(status=CheckoutSession.Status.COMPLETED)
    original = Q(recovered_from__isnull=True)
    counts = sessions.aggregate(
        started=Count("pk", filter=original),
        checkouts_created=Count("pk", filter=original & Q(recurrente_checkout_id__isnull=False)),
        completed=Count("pk", filter=completed),
        abandoned=Count("pk", filter=original & Q(reminder_sent_at__isnull=False)),
        late_completions=Count("pk", filter=original & completed & Q(reminder_sent_at__isnull=False)),
        recovery_checkouts_paid=Count("pk", filter=~original & completed),
        recovered=Count("pk", filter=recovered_q()),
    )
    reminders = EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER, created_at__gte=start, created_at__lt=end).aggregate(
        sent=Count("pk", filter=Q(status__in=EmailLog.LEFT_US)),
        failed=Count("pk", filter=Q(status=EmailLog.Status.FAILED)),
        opened=Count("pk", filter=Q(opened_at__isnull=False) | Q(clicked_at__isnull=False)),
        clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
    )
    paid = Payment.objects.filter(
        kind=Payment.Kind.PURCHASE, status=Payment.Status.SUCCEEDED, flag=Payment.Flag.NONE, paid_at__gte=start, paid_at__lt=end,
    )
    money = paid.aggregate(revenue=Sum("amount"), recovered_revenue=Sum("amount", filter=recovered_q("checkout_session__")))
    recovered = counts["recovered"]
    return {
        **counts,
        "conversion_rate": _rate(counts["completed"], counts["started"]),
        "reminders_sent": reminders["sent"],
        "reminders_failed": reminders["failed"],
        "reminder_open_rate": _rate(reminders["opened"], reminders["sent"]),
        "reminder_click_rate": _rate(reminders["clicked"], reminders["sent"]),
        "recovery_rate": _rate(recovered, counts["abandoned"]),
        "revenue": money["revenue"] or Decimal("0.00"),
        "recovered_revenue": money["recovered_revenue"] or Decimal("0.00"),
    }


def funnel_daily(*, start, end) -> list[dict]:
    """Per-day attempts and completions, one grouped query."""
    rows = (
        CheckoutSession.objects.filter(kind=CheckoutSession.Kind.PURCHASE, created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            started=Count("pk", filter=Q(recovered_from__isnull=True)),
            completed=Count("pk", filter=Q(status=CheckoutSession.Status.COMPLETED)),
        )
        .order_by("day")
    )
    return list(rows)
