"""The one table of Recurrente event types we act on, and the translation of their payloads.

Payload shapes are partly unverified (see the Recurrente notes), so every field is read
defensively: a missing or mistyped field raises PayloadError (the event is marked failed with
the reason, never a crash), and the owning app's services receive plain domain values.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from checkout.models import Subscription
from checkout.recurrente import recurrente_time
from checkout.services import payments, subscriptions

from .models import WebhookEvent

logger = logging.getLogger(__name__)


class PayloadError(ValueError):
    """A signed payload we cannot read. Retrying will not help; a person should look."""


class EventIgnored(Exception):
    """Nothing of ours to change (an unknown checkout for a decline, a refund of a payment we
    never recorded, …). The reason is stored on the event."""


Handler = Callable[[WebhookEvent], str]


# --- Reading payloads ----------------------------------------------------------------------------

def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value, *, limit: int = 500) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _id(value, prefix: str) -> str:
    """A Recurrente id with the expected prefix, or ""."""
    text = _str(value, limit=64)
    return text if text.startswith(prefix) and text.isascii() and text.replace("_", "").isalnum() else ""


def _when(payload: dict) -> datetime | None:
    return recurrente_time(payload.get("created_at"))


def _checkout_id(payload: dict) -> str:
    return _id(_dict(payload.get("checkout")).get("id"), "ch_")


def payment_confirmation_from_payload(payload: dict) -> payments.PaymentConfirmation:
    """payment_intent.succeeded (legacy), intent.succeeded (unified), bank_transfer_intent.succeeded."""
    checkout = _dict(payload.get("checkout"))
    payment = _dict(payload.get("payment"))
    checkout_payment = _dict(checkout.get("payment"))
    root_id = _str(payload.get("id"), limit=64)

    payment_id = _id(payment.get("id"), "pa_") or _id(checkout_payment.get("id"), "pa_") or _id(root_id, "pa_")
    if not payment_id:
        raise PayloadError("succeeded payment without a payment id (pa_…)")
    amount = payload.get("amount_in_cents")
    if amount is None:
        amount = checkout.get("total_in_cents")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise PayloadError(f"payment {payment_id}: amount_in_cents missing or not a positive integer")
    currency = _str(payload.get("currency") or checkout.get("currency"), limit=3).upper()
    if len(currency) != 3 or not currency.isalpha():
        raise PayloadError(f"payment {payment_id}: currency missing or malformed")

    paymentable = _dict(payment.get("paymentable")) or _dict(checkout_payment.get("paymentable"))
    subscription_id = _id(paymentable.get("id"), "su_") if paymentable.get("type") == "Subscription" else ""
    checkout_id = _checkout_id(payload)
    if not checkout_id and not subscription_id:
        raise PayloadError(f"payment {payment_id}: neither a checkout id nor a subscription id")

    method = _dict(checkout.get("payment_method"))
    last4 = _str(_dict(method.get("card")).get("last4"), limit=4)
    customer = _dict(payload.get("customer"))
    metadata = _dict(checkout.get("metadata"))
    return payments.PaymentConfirmation(
        payment_id=payment_id,
        amount_cents=amount,
        currency=currency,
        checkout_id=checkout_id,
        intent_id=_id(root_id, "in_") or _id(_dict(checkout.get("latest_intent")).get("id"), "in_"),
        subscription_id=subscription_id,
        method=_str(method.get("type"), limit=32),
        card_last4=last4 if last4.isdigit() else "",
        customer_email=_str(customer.get("email"), limit=254) or _str(payload.get("customer_email"), limit=254),
        customer_name=_str(customer.get("full_name"), limit=200) or _str(payload.get("customer_name"), limit=200),
        customer_id=_id(customer.get("id"), "us_") or _id(payload.get("customer_id"), "us_"),
        metadata_session_id=_str(metadata.get("checkout_session_id"), limit=64),
        paid_at=_when(payload),
    )


# --- Handlers ------------------------------------------------------------------------------------

def payment_succeeded(event: WebhookEvent) -> str:
    confirmation = payment_confirmation_from_payload(event.payload)
    return payments.payment_confirmed_record(confirmation=confirmation)


def _require_checkout_id(payload: dict) -> str:
    checkout_id = _checkout_id(payload)
    if not checkout_id:
        raise PayloadError("event without a checkout id (ch_…)")
    return checkout_id


def _ignore_unknown(outcome: str, what: str) -> str:
    if outcome in (payments.Outcome.UNKNOWN_CHECKOUT, payments.Outcome.UNKNOWN_PAYMENT, payments.Outcome.UNKNOWN_SUBSCRIPTION):
        raise EventIgnored(f"{what}: {outcome}")
    return outcome


def payment_failed(event: WebhookEvent) -> str:
    checkout_id = _require_checkout_id(event.payload)
    outcome = payments.checkout_payment_failure_record(
        checkout_id=checkout_id, reason=_str(event.payload.get("failure_reason")), failed_at=_when(event.payload)
    )
    return _ignore_unknown(outcome, checkout_id)


def bank_transfer_failed(event: WebhookEvent) -> str:
    checkout_id = _require_checkout_id(event.payload)
    outcome = payments.checkout_payment_failure_record(
        checkout_id=checkout_id,
        reason=_str(event.payload.get("failure_reason")) or "The bank transfer did not go through.",
        failed_at=_when(event.payload), bank_transfer=True,
    )
    return _ignore_unknown(outcome, checkout_id)


def bank_transfer_pending(event: WebhookEvent) -> str:
    checkout_id = _require_checkout_id(event.payload)
    outcome = payments.checkout_payment_in_progress_record(checkout_id=checkout_id, started_at=_when(event.payload))
    return _ignore_unknown(outcome, checkout_id)


def refund_created(event: WebhookEvent) -> str:
    payload = event.payload
    refund_id = _id(payload.get("id"), "re_") or _str(payload.get("id"), limit=64)
    payment_id = _id(_dict(payload.get("payment_intent")).get("id"), "pa_") or _id(payload.get("payment_intent_id"), "pa_")
    intent_id = _id(_dict(payload.get("intent")).get("id"), "in_") or _id(payload.get("intent_id"), "in_")
    if not refund_id or not (payment_id or intent_id):
        raise PayloadError("refund without a refund id or a payment/intent id")
    outcome = payments.payment_refund_record(
        refund_id=refund_id, payment_id=payment_id, intent_id=intent_id, status=_str(payload.get("status"), limit=20),
        refunded_at=_when(payload),
    )
    return _ignore_unknown(outcome, f"refund {refund_id}")


def subscription_changed(event: WebhookEvent, *, status: str) -> str:
    payload = event.payload
    subscription_id = _id(payload.get("id"), "su_")
    if not subscription_id:
        raise PayloadError("subscription event without a subscription id (su_…)")
    outcome = subscriptions.subscription_status_record(
        subscription_id=subscription_id, status=status, event_at=_when(payload),
        payment_id=_id(_dict(payload.get("payment")).get("id"), "pa_"),
    )
    return _ignore_unknown(outcome, subscription_id)


def subscription_updated(event: WebhookEvent) -> str:
    """`subscription.update` says only that something changed: the state is read from the API."""
    subscription_id = _id(event.payload.get("id"), "su_")
    if not subscription_id:
        raise PayloadError("subscription event without a subscription id (su_…)")
    outcome = subscriptions.subscription_refresh(subscription_id=subscription_id, event_at=_when(event.payload))
    return _ignore_unknown(outcome, subscription_id)


def _subscription(status: str) -> Handler:
    return partial(subscription_changed, status=status)


# Every event type we act on. Anything else is acknowledged and marked ignored.
HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": payment_succeeded,
    "intent.succeeded": payment_succeeded,
    "bank_transfer_intent.succeeded": payment_succeeded,
    "payment_intent.failed": payment_failed,
    "bank_transfer_intent.pending": bank_transfer_pending,
    "bank_transfer_intent.failed": bank_transfer_failed,
    "refund.create": refund_created,
    "subscription.create": _subscription(Subscription.Status.ACTIVE),
    "subscription.past_due": _subscription(Subscription.Status.PAST_DUE),
    "subscription.pause": _subscription(Subscription.Status.PAUSED),
    "subscription.paused": _subscription(Subscription.Status.PAUSED),
    "subscription.unpause": _subscription(Subscription.Status.ACTIVE),
    "subscription.reactivate": _subscription(Subscription.Status.ACTIVE),
    "subscription.cancel": _subscription(Subscription.Status.CANCELLED),
    "subscription.update": subscription_updated,
    # Not in Recurrente's documented list (a failed first charge is usually only visible through
    # the API's status); accepted in case it is sent: the site stays owned.
    "subscription.unable_to_start": _subscription(Subscription.Status.UNABLE_TO_START),
}
