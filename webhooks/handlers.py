"""The one table of Recurrente event types we act on.

Payloads are read by `checkout.recurrente_data` (the one translation of Recurrente's JSON, shared
with the reconciler): a missing or mistyped field raises PayloadError (the event is marked failed
with the reason, never a crash), and the owning app's services receive plain domain values.
"""

import logging
from collections.abc import Callable
from functools import partial

from checkout.ledger import UNKNOWN_OUTCOMES
from checkout.models import Subscription
from checkout.recurrente import JsonObject
from checkout.recurrente_data import (
    PayloadError,
    as_dict,
    as_str,
    checkout_id_of,
    created_at,
    payment_confirmation_from_event,
    recurrente_id,
)
from checkout.services import confirmations, payments, refunds, subscriptions

from .models import WebhookEvent

logger = logging.getLogger(__name__)

__all__ = ["HANDLERS", "EventIgnored", "PayloadError", "handler_for"]


class EventIgnored(Exception):
    """Nothing of ours to change (an unknown checkout for a decline, a refund of a payment we
    never recorded, …). The reason is stored on the event."""


Handler = Callable[[WebhookEvent], str]


# --- Handlers ------------------------------------------------------------------------------------

def payment_succeeded(event: WebhookEvent) -> str:
    confirmation = payment_confirmation_from_event(event.payload)
    return confirmations.payment_confirmed_record(confirmation=confirmation)


def _require_checkout_id(payload: JsonObject) -> str:
    checkout_id = checkout_id_of(payload)
    if not checkout_id:
        raise PayloadError("event without a checkout id (ch_…)")
    return checkout_id


def _ignore_unknown(outcome: str, what: str) -> str:
    if outcome in UNKNOWN_OUTCOMES:
        raise EventIgnored(f"{what}: {outcome}")
    return outcome


def payment_failed(event: WebhookEvent) -> str:
    checkout_id = _require_checkout_id(event.payload)
    outcome = payments.checkout_payment_failure_record(
        checkout_id=checkout_id, reason=as_str(event.payload.get("failure_reason")), failed_at=created_at(event.payload)
    )
    return _ignore_unknown(outcome, checkout_id)


def bank_transfer_failed(event: WebhookEvent) -> str:
    checkout_id = _require_checkout_id(event.payload)
    outcome = payments.checkout_payment_failure_record(
        checkout_id=checkout_id,
        reason=as_str(event.payload.get("failure_reason")) or "The bank transfer did not go through.",
        failed_at=created_at(event.payload), bank_transfer=True,
    )
    return _ignore_unknown(outcome, checkout_id)


def bank_transfer_pending(event: WebhookEvent) -> str:
    checkout_id = _require_checkout_id(event.payload)
    outcome = payments.checkout_payment_in_progress_record(checkout_id=checkout_id, started_at=created_at(event.payload))
    return _ignore_unknown(outcome, checkout_id)


def refund_reported(event: WebhookEvent) -> str:
    """`refund.*` (undocumented): matched by its re_ id only; an unmatched one is kept for staff
    and the event is marked ignored, never retried."""
    outcome = refunds.refund_event_record(data=event.payload)
    return _ignore_unknown(outcome, f"refund {as_str(event.payload.get('id'), limit=64)} matches no refund of ours")


def dispute_reported(event: WebhookEvent) -> str:
    """`dispute.*` (undocumented): flag the payment it names and alert staff."""
    return refunds.payment_dispute_record(event_type=event.event_type, data=event.payload)


def subscription_changed(event: WebhookEvent, *, status: str, resumes: bool = False) -> str:
    payload = event.payload
    subscription_id = recurrente_id(payload.get("id"), "su_")
    if not subscription_id:
        raise PayloadError("subscription event without a subscription id (su_…)")
    outcome = subscriptions.subscription_status_record(
        subscription_id=subscription_id, status=status, event_at=created_at(payload),
        payment_id=recurrente_id(as_dict(payload.get("payment")).get("id"), "pa_"), resumes=resumes,
    )
    return _ignore_unknown(outcome, subscription_id)


def subscription_updated(event: WebhookEvent) -> str:
    """`subscription.update` says only that something changed: the state is read from the API."""
    subscription_id = recurrente_id(event.payload.get("id"), "su_")
    if not subscription_id:
        raise PayloadError("subscription event without a subscription id (su_…)")
    outcome = subscriptions.subscription_refresh(subscription_id=subscription_id, event_at=created_at(event.payload))
    return _ignore_unknown(outcome, subscription_id)


def _subscription(status: str, *, resumes: bool = False) -> Handler:
    return partial(subscription_changed, status=status, resumes=resumes)


# Every event type we act on. Anything else is acknowledged and marked ignored.
HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": payment_succeeded,
    "intent.succeeded": payment_succeeded,
    "bank_transfer_intent.succeeded": payment_succeeded,
    "payment_intent.failed": payment_failed,
    "bank_transfer_intent.pending": bank_transfer_pending,
    "bank_transfer_intent.failed": bank_transfer_failed,
    "refund.create": refund_reported,
    "subscription.create": _subscription(Subscription.Status.ACTIVE),
    "subscription.past_due": _subscription(Subscription.Status.PAST_DUE),
    "subscription.pause": _subscription(Subscription.Status.PAUSED),
    "subscription.paused": _subscription(Subscription.Status.PAUSED),
    # Billing resumes: these end a cancellation that is older than them (an owner's portal cancel).
    "subscription.unpause": _subscription(Subscription.Status.ACTIVE, resumes=True),
    "subscription.reactivate": _subscription(Subscription.Status.ACTIVE, resumes=True),
    "subscription.cancel": _subscription(Subscription.Status.CANCELLED),
    "subscription.update": subscription_updated,
    # Not in Recurrente's documented list (a failed first charge is usually only visible through
    # the API's status); accepted in case it is sent: the site stays owned.
    "subscription.unable_to_start": _subscription(Subscription.Status.UNABLE_TO_START),
}

# Families whose event names Recurrente has not documented: any `refund.*` or `dispute.*` goes to
# the family's handler rather than being ignored as unknown.
FAMILY_HANDLERS: dict[str, Handler] = {
    "refund.": refund_reported,
    "dispute.": dispute_reported,
}


def handler_for(event_type: str) -> Handler | None:
    if event_type in HANDLERS:
        return HANDLERS[event_type]
    for prefix, handler in FAMILY_HANDLERS.items():
        if event_type.startswith(prefix):
            return handler
    return None
