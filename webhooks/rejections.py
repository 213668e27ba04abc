"""Alert rules for refused webhook deliveries (DESIGN §8): "3 rejected deliveries in 15 minutes,
or rejections with no accepted delivery in an hour".

A wrong or rotated secret, a wrong RECURRENTE_LIVE_MODE or a skewed clock refuses every delivery;
Svix retries each for about 28 hours, then gives up, and disables the endpoint after 5 days of
failures, so these rules exist to get a human to fix the configuration well before that. They are
plain functions returning `webmagic.alerts.Alert`, to be registered like webhooks/alerts.py's rule
(from the app config, so webmagic never imports webhooks); the alerts module mails them.
"""

from datetime import datetime, timedelta

from webmagic.alerts import Alert

from . import selectors
from .models import WebhookRejection

# What our own configuration (or Recurrente's) gets wrong. Requests without Svix headers or with
# huge bodies are what any scanner on the internet sends: counted and shown, never alerted on, or
# anyone could page staff every hour.
ALERTING_REASONS = tuple(
    reason for reason in WebhookRejection.Reason.values
    if reason not in (WebhookRejection.Reason.MISSING_HEADERS, WebhookRejection.Reason.OVERSIZED_BODY)
)
REJECTIONS_MAX = 3
REJECTIONS_WINDOW = timedelta(minutes=15)
ACCEPTED_WINDOW = timedelta(hours=1)

WHAT_TO_DO = (
    "What to check:\n"
    "- bad_signature / no_secret: RECURRENTE_WEBHOOK_SECRETS must hold the endpoint's current whsec_ signing "
    "secret from Recurrente's dashboard (the webhook endpoint's signing secret); during a rotation list "
    "both old and new, comma-separated.\n"
    "- other_mode: RECURRENTE_LIVE_MODE must match the key (sk_live_… → True, sk_test_… → False). Such events "
    "are stored and ignored; after fixing the setting, reprocess them from Webhook events in admin "
    "(filter: ignored).\n"
    "- stale_timestamp / future_timestamp: the server clock is off (check NTP); Svix signs with its send time "
    "and we accept 5 minutes either way.\n"
    "- malformed_body: a signed body we cannot read; something in front of us (proxy, WAF) may rewrite bodies.\n"
    "- missing_headers / oversized_body are counted (Webhook rejections in admin) but never alerted on: scanners "
    "send them; many of them with no accepted delivery may mean a proxy strips the svix-* headers.\n\n"
    "Svix retries each refused delivery for about 28 hours and then gives up; after 5 days of failures it "
    "disables the endpoint (re-enable it in Recurrente's dashboard). Until fixed, payments those deliveries "
    "announce are applied only if reconciliation finds them. Counts per reason: Webhook rejections in admin."
)


def _breakdown(*, since: datetime) -> str:
    labels = dict(WebhookRejection.Reason.choices)
    by_reason = selectors.rejections_by_reason(since=since)
    return "\n".join(
        f"- {count} × {reason} ({labels.get(reason, reason)})"
        for reason, count in sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    )


def alert_rejected_deliveries(*, now: datetime) -> Alert | None:
    """3 or more deliveries refused in the minute buckets of the last 15 minutes."""
    since = now - REJECTIONS_WINDOW
    total = selectors.rejections_total(since=since, reasons=ALERTING_REASONS)
    if total < REJECTIONS_MAX:
        return None
    return Alert(
        kind="rejected_deliveries",
        subject=f"{total} Recurrente webhook deliveries refused in the last 15 minutes",
        body=(
            f"We refused {total} webhook deliveries from Recurrente in the last 15 minutes "
            f"(alert at {REJECTIONS_MAX}). Refused deliveries are not stored (other_mode ones are stored but ignored), "
            "so the payments they announce are not applied.\n"
            f"By reason:\n{_breakdown(since=since)}\n\n{WHAT_TO_DO}"
        ),
    )


def alert_rejections_without_accepted(*, now: datetime) -> Alert | None:
    """Deliveries were refused in the last hour and none was accepted in that hour: everything
    Recurrente sends may be failing, even at a rate under the 15-minute rule."""
    since = now - ACCEPTED_WINDOW
    total = selectors.rejections_total(since=since, reasons=ALERTING_REASONS)
    if not total:
        return None
    last = selectors.last_accepted_delivery()
    if last is not None and last.received_at >= since:
        return None
    last_seen = f"{last.received_at:%Y-%m-%d %H:%M} UTC (event {last.pk})" if last is not None else "never"
    return Alert(
        kind="rejections_without_accepted",
        subject="Recurrente webhooks: deliveries refused and none accepted in the last hour",
        body=(
            f"We refused {total} webhook deliveries in the last hour and accepted none. "
            f"Last accepted delivery: {last_seen}.\n"
            f"By reason:\n{_breakdown(since=since)}\n\n{WHAT_TO_DO}"
        ),
    )
