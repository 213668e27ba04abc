"""Staff alert rule owned by the webhooks app, registered from `WebhooksConfig.ready()`."""

from datetime import datetime, timedelta

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
