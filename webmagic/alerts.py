"""Staff alerts (DESIGN §8), checked every five minutes by `webmagic.tasks.check_alerts`.

One function per rule returns an `Alert` or None; `alerts_check` mails the ones that fire to
ADMINS, each kind at most once an hour: a kind that was mailed in the last hour is skipped, and the
email's dedupe key (`alert:<kind>:<hour>`) makes that a database fact when two runs overlap.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from .emails import email_alert_staff
from .models import EmailLog

logger = logging.getLogger(__name__)

FAILED_WEBHOOKS_MAX = 5
FAILED_WEBHOOKS_WINDOW = timedelta(minutes=10)
CONVERSION_MIN_PERCENT = 50
CONVERSION_WINDOW = timedelta(hours=24)
CONVERSION_MIN_SAMPLE = 10
RECOVERY_FAILURE_MAX_PERCENT = 10
RECOVERY_WINDOW = timedelta(hours=24)
RECOVERY_MIN_SAMPLE = 10
QUEUE_MAX_WAITING = 100
REPEAT_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    body: str


def alert_failed_webhooks(*, now: datetime) -> Alert | None:
    """More than 5 webhook deliveries failed processing in the last 10 minutes."""
    from webhooks.models import WebhookEvent

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


def alert_low_conversion(*, now: datetime) -> Alert | None:
    """Purchase conversion (as on the funnel page) under 50 % over the last 24 hours, once at
    least 10 attempts were started. Attempts younger than the abandonment delay are left out:
    their buyers may still be paying."""
    from checkout.selectors import funnel_metrics

    end = now - timedelta(minutes=settings.ABANDONED_CART_DELAY_MINUTES)
    metrics = funnel_metrics(start=end - CONVERSION_WINDOW, end=end)
    started, rate = metrics["started"], metrics["conversion_rate"]
    if started < CONVERSION_MIN_SAMPLE or rate is None or rate >= CONVERSION_MIN_PERCENT:
        return None
    return Alert(
        kind="low_conversion",
        subject=f"Purchase conversion is {rate} % over the last 24 hours",
        body=(
            f"{metrics['completed']} of {started} purchase attempts started in the 24 hours to {end:%Y-%m-%d %H:%M} UTC "
            f"were paid ({rate} %, alert under {CONVERSION_MIN_PERCENT} %). {metrics['checkouts_created']} reached "
            "Recurrente's checkout.\nCheck the funnel page and the checkout sessions' errors in admin "
            "(a Recurrente outage shows as sessions stuck in `initiated` with a checkout error)."
        ),
    )


def alert_recovery_emails_failing(*, now: datetime) -> Alert | None:
    """More than 10 % of the recovery reminders of the last 24 hours failed or bounced (with at
    least 10 whose outcome is known)."""
    # Cancelled reminders (no longer wanted at send time) are neither a success nor a failure.
    outcome_known = ~Q(status__in=[EmailLog.Status.QUEUED, EmailLog.Status.SENDING, EmailLog.Status.CANCELLED])
    failing = Q(status__in=[EmailLog.Status.FAILED, EmailLog.Status.BOUNCED])
    counts = EmailLog.objects.filter(
        kind=EmailLog.Kind.RECOVERY_REMINDER, created_at__gte=now - RECOVERY_WINDOW
    ).aggregate(total=Count("pk", filter=outcome_known), failing=Count("pk", filter=failing))
    total, failed = counts["total"], counts["failing"]
    if total < RECOVERY_MIN_SAMPLE or failed * 100 <= total * RECOVERY_FAILURE_MAX_PERCENT:
        return None
    percent = round(100 * failed / total, 1)
    return Alert(
        kind="recovery_emails_failing",
        subject=f"{percent} % of recovery emails failed in the last 24 hours",
        body=(
            f"{failed} of {total} recovery reminders sent in the last 24 hours failed or bounced "
            f"(alert above {RECOVERY_FAILURE_MAX_PERCENT} %).\nSee the Email log in admin (kind: recovery reminder, "
            "status: failed or bounced) for the provider's errors; check the Brevo key and sending domain."
        ),
    )


def broker_queue_length() -> int | None:
    """Messages waiting in the default Celery queue, or None when the broker cannot say."""
    from .celery import app

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        logger.info("queue-length alert skipped: broker transport is not Redis")
        return None
    queue = app.conf.task_default_queue or "celery"
    with app.connection_for_write(url=url) as connection:
        return int(connection.default_channel.client.llen(queue))


def alert_queue_backlog(*, now: datetime, queue_length: Callable[[], int | None] = broker_queue_length) -> Alert | None:
    """More than 100 tasks waiting: workers are down or cannot keep up (emails and webhooks wait)."""
    try:
        waiting = queue_length()
    except Exception as exc:  # the broker being unreachable is itself worth a log line, not a crash
        logger.warning("queue-length alert: could not read the broker (%s)", type(exc).__name__)
        return None
    if waiting is None or waiting <= QUEUE_MAX_WAITING:
        return None
    return Alert(
        kind="queue_backlog",
        subject=f"{waiting} tasks waiting in the Celery queue",
        body=(
            f"{waiting} tasks are waiting in the broker's queue (alert above {QUEUE_MAX_WAITING}). Webhook processing and "
            "emails are delayed. Check that the workers are running and healthy; scale them out if they are busy."
        ),
    )


def _recently_sent(*, kind: str, now: datetime) -> bool:
    return EmailLog.objects.filter(
        kind=EmailLog.Kind.STAFF_ALERT, dedupe_key__startswith=f"alert:{kind}:", created_at__gt=now - REPEAT_AFTER
    ).exists()


def alerts_check(*, now: datetime | None = None, queue_length: Callable[[], int | None] | None = None) -> list[str]:
    """Evaluate every rule; mail the ones that fire and were not mailed in the last hour.
    Returns the kinds mailed."""
    now = now or timezone.now()
    rules = [
        alert_failed_webhooks,
        alert_low_conversion,
        alert_recovery_emails_failing,
        lambda *, now: alert_queue_backlog(now=now, queue_length=queue_length or broker_queue_length),
    ]
    mailed = []
    for rule in rules:
        try:
            alert = rule(now=now)
        except Exception:
            # One broken rule must not silence the others.
            logger.exception("alert rule %s failed", getattr(rule, "__name__", rule))
            continue
        if alert is None:
            continue
        if _recently_sent(kind=alert.kind, now=now):
            logger.info("alert %s still firing; already mailed within the hour", alert.kind)
            continue
        logs = email_alert_staff(
            subject=f"[WebMagic alert] {alert.subject}", body=alert.body,
            dedupe_key=f"alert:{alert.kind}:{now:%Y%m%d%H}",
        )
        logger.warning("alert %s: %s (%s email(s) queued)", alert.kind, alert.subject, len(logs))
        if logs:
            mailed.append(alert.kind)
    return mailed
