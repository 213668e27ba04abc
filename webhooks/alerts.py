"""Staff alert rules owned by the webhooks app, registered from `WebhooksConfig.ready()`."""

from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q

from checkout.models import Payment
from webmagic.alerts import Alert

from .models import WebhookEvent

FAILED_WEBHOOKS_MAX = 5
FAILED_WEBHOOKS_WINDOW = timedelta(minutes=10)


def alert_failed_webhooks(*, now: datetime) -> Alert | None:
    """More than 5 webhook deliveries failed processing in the last 10 minutes."""
    failed = WebhookEvent.objects.filter(
        status=WebhookEvent.Status.FAILED, processing_started_at__gte=now - FAILED_WEBHOOKS_WINDOW
    )
    count = failed.count()
    if count <= FAILED_WEBHOOKS_MAX:
        return None
    sample = list(failed.order_by("-processing_started_at").values_list("pk", "event_type")[:10])
    listing = "\n".join(f"- event {pk} ({event_type})" for pk, event_type in sample)
    return Alert(
        kind="failed_webhooks",
        subject=f"{count} Recurrente webhook events failed in the last 10 minutes",
        body=(
            f"{count} webhook events failed processing in the last 10 minutes (alert above {FAILED_WEBHOOKS_MAX}).\n"
            f"Most recent:\n{listing}\n\nPayments may not be applied. See Webhook events in admin (filter: failed); "
            "fix the cause, then use \"Reprocess\"."
        ),
    )


# A webhook normally follows a payment within seconds; the success page's own look at Recurrente
# often records the payment first, so absence is only judged after this long.
WEBHOOK_GRACE = timedelta(minutes=10)
# Each reconciled payment is judged in one window of an hour, so it alerts at most once.
MISSED_WINDOW = timedelta(hours=1)


def alert_payments_without_webhook(*, now: datetime) -> Alert | None:
    """Payments that reconciliation recorded and for which no webhook arrived even afterwards:
    Recurrente's webhooks are not reaching us (or, on test keys, are not sent at all)."""
    announced = WebhookEvent.objects.filter(
        Q(object_id=OuterRef("recurrente_payment_id")) | (Q(object_id=OuterRef("recurrente_intent_id")) & ~Q(object_id=""))
    )
    missed = Payment.objects.filter(
        recorded_from=Payment.Source.RECONCILIATION,
        created_at__gt=now - WEBHOOK_GRACE - MISSED_WINDOW, created_at__lte=now - WEBHOOK_GRACE,
    ).exclude(Exists(announced))
    sample = list(missed.order_by("-created_at").values_list("recurrente_payment_id", "recurrente_checkout_id")[:10])
    if not sample:
        return None
    listing = "\n".join(f"- payment {payment} (checkout {checkout})" for payment, checkout in sample)
    return Alert(
        kind="webhooks_missed",
        subject="Payments found by reconciliation with no webhook: Recurrente's webhooks look broken",
        body=(
            "Recurrente reported these payments as paid when we asked its API, and no webhook about them has "
            f"arrived since ({int(WEBHOOK_GRACE.total_seconds() // 60)} minutes or more). They are recorded and the "
            f"customers were emailed as usual.\n{listing}\n\nOn live keys, webhooks are not reaching us: see the payments "
            "health page (rejected deliveries, last accepted delivery) and the webhook settings in Recurrente's "
            "dashboard. On test keys, which may send no webhooks at all, this is expected."
        ),
    )
