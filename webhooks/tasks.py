import logging
from typing import cast

from celery import Task, shared_task
from django.utils import timezone

from . import services

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=services.MAX_ATTEMPTS, acks_late=True)
def process_webhook_event(self: Task[[int], str | None], event_id: int) -> str | None:
    """Process one stored event; a failing handler is retried with exponential backoff
    (1, 2, 4 … minutes). The claim in the service makes duplicates of this task harmless."""
    try:
        return services.webhook_event_process(event_id=event_id)
    except services.WebhookEventFailed as exc:
        # max_retries is set on the decorator, so never None (which means "retry forever").
        if exc.retry_in is None or self.request.retries >= cast(int, self.max_retries):
            return "failed"
        raise self.retry(exc=exc, countdown=exc.retry_in) from exc


@shared_task(acks_late=True)
def sweep_unprocessed_webhooks() -> int:
    """Beat, every 5 minutes: re-drive events left received/processing, and failed ones whose
    retry is overdue, so a lost broker message or a dead worker loses nothing."""
    return services.webhook_events_sweep()


@shared_task(acks_late=True)
def prune_webhook_rejections() -> int:
    """Beat, daily: drop rejection counts older than the retention (30 days)."""
    return services.webhook_rejections_prune(older_than=timezone.now() - services.REJECTION_RETENTION)
