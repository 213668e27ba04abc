"""Brevo's tracking webhooks (through django-anymail) move the email log forward.

Brevo posts to `/anymail/brevo/tracking/`; anymail checks HTTP basic auth against
ANYMAIL["WEBHOOK_SECRET"], normalises the event and sends the `anymail.signals.tracking` signal;
`tracking_received` (connected in WebmagicConfig.ready) hands it to `email_tracking_record`.

Events arrive late, twice and out of order, so the status only moves forward:
sent < delivered < opened < clicked; bounced and complained are final. Each timestamp is set
once, on the first event of its kind.
"""

import logging
from datetime import datetime

from anymail.signals import EventType
from anymail.webhooks.brevo import BrevoTrackingWebhookView
from django.conf import settings
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .models import EmailLog, EmailSuppression

logger = logging.getLogger(__name__)

S = EmailLog.Status
RANK: dict[str, int] = {S.QUEUED: 0, S.SENDING: 0, S.SENT: 1, S.FAILED: 1, S.DELIVERED: 2, S.OPENED: 3, S.CLICKED: 4}
FINAL = {S.BOUNCED, S.COMPLAINED}

# anymail event type -> (our status, the timestamp field it sets)
EVENTS = {
    EventType.DELIVERED: (S.DELIVERED, "delivered_at"),
    EventType.OPENED: (S.OPENED, "opened_at"),
    EventType.CLICKED: (S.CLICKED, "clicked_at"),
    EventType.BOUNCED: (S.BOUNCED, "bounced_at"),
    EventType.COMPLAINED: (S.COMPLAINED, None),
    # Brevo "blocked" / "error": it never left Brevo. Only meaningful before any later news.
    EventType.REJECTED: (S.FAILED, None),
    EventType.FAILED: (S.FAILED, None),
}


def email_tracking_record(
    *, message_id: str, event_type: str, timestamp: datetime | None = None, detail: str = "", recipient: str = "",
) -> bool:
    """Apply one tracking event to the email with this provider message id. Returns whether the
    row changed. Unknown ids and uninteresting event types (queued, deferred…) are ignored.
    `recipient` (the provider's) stands in for an address the 90-day cleanup removed from the log."""
    if not message_id or event_type not in EVENTS:
        return False
    status, stamp_field = EVENTS[event_type]
    at = timestamp or timezone.now()
    with transaction.atomic():
        # Locked so two events for one email (Brevo posts them concurrently) cannot interleave.
        log = EmailLog.objects.select_for_update().filter(provider_message_id=message_id).order_by("pk").first()
        if log is None:
            logger.info("tracking %s for unknown message id; ignored", event_type)
            return False
        fields = []
        if stamp_field and getattr(log, stamp_field) is None:
            setattr(log, stamp_field, at)
            fields.append(stamp_field)
        if _moves_forward(current=log.status, new=status):
            log.status = status
            fields.append("status")
            if status == S.FAILED:
                log.error = f"Brevo: {detail or event_type}"[:2000]
                fields.append("error")
        complainant = (log.to_email or recipient).strip().lower()
        if status == S.COMPLAINED and complainant:
            # Someone marked our mail as spam: no more reminders or nudges to them.
            EmailSuppression.objects.get_or_create(email=complainant, defaults={"source": EmailSuppression.Source.COMPLAINT})
        if not fields:
            return False
        log.save(update_fields=[*fields, "updated_at"])
    logger.info("email %s: tracking %s applied (%s)", log.pk, event_type, ", ".join(fields))
    return True


def _moves_forward(*, current: str, new: str) -> bool:
    if current in FINAL or current == new:
        return False
    if new in FINAL:
        return True
    if new == S.FAILED:
        # A "blocked" after a delivery or open report is stale news.
        return RANK.get(current, 0) <= RANK[S.SENT] and current != S.FAILED
    return RANK[new] > RANK.get(current, 0)


def tracking_received(sender, event, esp_name, **kwargs) -> None:
    """anymail.signals.tracking receiver: domain values only, to the service."""
    email_tracking_record(
        message_id=event.message_id or "", event_type=event.event_type, timestamp=event.timestamp,
        detail=str(event.mta_response or event.reject_reason or "")[:300], recipient=event.recipient or "",
    )


_brevo_tracking = BrevoTrackingWebhookView.as_view()


@csrf_exempt
def brevo_tracking_webhook(request, *args, **kwargs):
    """anymail's Brevo tracking view, refused outright when no WEBHOOK_SECRET is configured:
    anymail itself only warns and then accepts unauthenticated posts, which would let anyone
    rewrite the email log (and add suppressions)."""
    if not (getattr(settings, "ANYMAIL", {}) or {}).get("WEBHOOK_SECRET"):
        raise Http404("tracking webhook not configured")
    return _brevo_tracking(request, *args, **kwargs)
