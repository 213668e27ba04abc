import logging
from datetime import timedelta
from typing import cast

from celery import shared_task
from django.utils import timezone

from . import emails

logger = logging.getLogger(__name__)

MAX_EMAIL_RETRIES = emails.MAX_ATTEMPTS - 1
# 30 s, 1, 2, 2, 2, 2 min: every retry of an attempt that may have arrived lands inside
# emails.RESEND_WINDOW (10 min), the part of Brevo's 15 minutes we rely on.
UNKNOWN_OUTCOME_RETRY_MAX_SECONDS = 120


@shared_task(bind=True, max_retries=MAX_EMAIL_RETRIES, acks_late=True)
def send_email(self, log_id: int) -> None:
    """Send one logged email; provider failures retry with exponential backoff (30 s … 16 min;
    at most 2 min apart once an attempt may have reached the provider)."""
    log = emails.email_claim_for_sending(log_id)
    if log is None:
        logger.info("email %s is not queued (already sent or in flight); nothing to do", log_id)
        return
    try:
        emails.email_deliver(log)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            emails.email_mark_failed(log_id, f"{type(exc).__name__}: {exc}")
            return
        countdown = 30 * 2**self.request.retries
        if emails.email_outcome_unknown(log_id):
            # Retried under the same idempotency key, so only while the provider remembers it.
            countdown = min(countdown, UNKNOWN_OUTCOME_RETRY_MAX_SECONDS)
        logger.warning("email %s failed (attempt %s), retrying in %ss", log_id, self.request.retries + 1, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc


# Longer than the longest retry countdown (30 s x 2**5 = 16 min), so a scheduled retry is not raced.
STUCK_EMAIL_AGE = timedelta(minutes=20)
# A live attempt holds its row locked, so the claim skips it; this only spares the claim's own
# moment between committing `sending` and taking the lock.
INTERRUPTED_EMAIL_AGE = timedelta(minutes=1)


@shared_task(acks_late=True)
def resend_stuck_emails() -> int:
    """Beat, every 2 minutes (migration 0010): emails left queued or left `sending` by a dead worker."""
    now = timezone.now()
    return len(emails.emails_stuck_redrive(older_than=now - STUCK_EMAIL_AGE, interrupted_before=now - INTERRUPTED_EMAIL_AGE))


@shared_task(acks_late=True)
def check_alerts() -> list[str]:
    """Every 5 minutes (migration 0005): run the registered alert rules (DESIGN §8); returns the
    kinds delivered this run."""
    from .alerts import Alert, alerts_check

    # cast: a delivered result always carries its alert.
    return [cast(Alert, result.alert).kind for result in alerts_check() if result.delivered]


@shared_task(acks_late=True)
def heartbeat() -> None:
    """Every minute (migration 0008, expiring after a minute in the queue): proves a worker consumes
    the queue; /healthz/ and the alerts read the stamp."""
    from .alerts import heartbeat_stamp

    heartbeat_stamp()
