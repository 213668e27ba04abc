"""The one translation of Recurrente's JSON (webhook payloads and API answers) into our values.

Payload shapes are partly unverified (see the Recurrente notes), so every field is read
defensively: a missing or mistyped field raises PayloadError (the caller decides whether that is
a failed event or a "try later"), never an AttributeError deep in a service. Webhook handlers and
the reconciler both use these functions, so a payment reads the same whichever way it reached us.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from checkout.ledger import PaymentConfirmation
from checkout.recurrente import JsonObject, recurrente_time
from webmagic.money import from_cents


class PayloadError(ValueError):
    """Recurrente data we cannot read. Retrying will not help; a person should look."""


def as_dict(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def as_str(value: object, *, limit: int = 500) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def recurrente_id(value: object, prefix: str) -> str:
    """A Recurrente id with the expected prefix (`pa_`, `ch_`, `re_`, …), or ""."""
    text = as_str(value, limit=64)
    return text if text.startswith(prefix) and text.isascii() and text.replace("_", "").isalnum() else ""


def created_at(data: JsonObject) -> datetime | None:
    return recurrente_time(data.get("created_at"))


def checkout_id_of(data: JsonObject) -> str:
    return recurrente_id(as_dict(data.get("checkout")).get("id"), "ch_")


def payment_confirmation_from_event(payload: JsonObject) -> PaymentConfirmation:
    """payment_intent.succeeded (legacy), intent.succeeded (unified), bank_transfer_intent.succeeded."""
    checkout = as_dict(payload.get("checkout"))
    payment = as_dict(payload.get("payment"))
    checkout_payment = as_dict(checkout.get("payment"))
    root_id = as_str(payload.get("id"), limit=64)

    payment_id = (
        recurrente_id(payment.get("id"), "pa_") or recurrente_id(checkout_payment.get("id"), "pa_")
        or recurrente_id(root_id, "pa_")
    )
    if not payment_id:
        raise PayloadError("succeeded payment without a payment id (pa_…)")
    amount = payload.get("amount_in_cents")
    if amount is None:
        amount = checkout.get("total_in_cents")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise PayloadError(f"payment {payment_id}: amount_in_cents missing or not a positive integer")
    # Read whole, then checked: truncating first would turn "dollars" into a currency "DOL".
    currency = as_str(payload.get("currency") or checkout.get("currency"), limit=16).upper()
    if len(currency) != 3 or not currency.isalpha():
        raise PayloadError(f"payment {payment_id}: currency missing or malformed")

    paymentable = as_dict(payment.get("paymentable")) or as_dict(checkout_payment.get("paymentable"))
    subscription_id = recurrente_id(paymentable.get("id"), "su_") if paymentable.get("type") == "Subscription" else ""
    checkout_id = checkout_id_of(payload)
    if not checkout_id and not subscription_id:
        raise PayloadError(f"payment {payment_id}: neither a checkout id nor a subscription id")

    method = as_dict(checkout.get("payment_method"))
    last4 = as_str(as_dict(method.get("card")).get("last4"), limit=4)
    customer = as_dict(payload.get("customer"))
    metadata = as_dict(checkout.get("metadata"))
    return PaymentConfirmation(
        payment_id=payment_id,
        amount_cents=amount,
        currency=currency,
        checkout_id=checkout_id,
        intent_id=recurrente_id(root_id, "in_") or recurrente_id(as_dict(checkout.get("latest_intent")).get("id"), "in_"),
        subscription_id=subscription_id,
        method=as_str(method.get("type"), limit=32),
        card_last4=last4 if last4.isdigit() else "",
        customer_email=as_str(customer.get("email"), limit=254) or as_str(payload.get("customer_email"), limit=254),
        customer_name=as_str(customer.get("full_name"), limit=200) or as_str(payload.get("customer_name"), limit=200),
        customer_id=recurrente_id(customer.get("id"), "us_") or recurrente_id(payload.get("customer_id"), "us_"),
        metadata_session_id=as_str(metadata.get("checkout_session_id"), limit=64),
        paid_at=created_at(payload),
    )


def payment_confirmation_from_checkout(checkout: JsonObject) -> PaymentConfirmation:
    """`GET /checkouts/{id}` of a paid checkout, read exactly as the succeeded events are: the
    checkout answer is what those events carry at `checkout`, and its payment and latest intent
    stand where the events put theirs."""
    intent = as_dict(checkout.get("latest_intent"))
    confirmation = payment_confirmation_from_event({
        "id": intent.get("id"),
        "checkout": checkout,
        "payment": as_dict(checkout.get("payment")),
        "amount_in_cents": checkout.get("total_in_cents"),
        "currency": checkout.get("currency"),
        "created_at": intent.get("created_at"),
    })
    return replace(confirmation, source="reconciliation")


# Recurrente's checkout statuses (GET /checkouts/{id}) and what they leave open.
CHECKOUT_STATUSES = ("unpaid", "paid", "payment_in_progress", "expired")


def checkout_status_of(answer: JsonObject) -> str:
    """The checkout's status, or "" when Recurrente answered something we do not know."""
    status = as_str(answer.get("status"), limit=40)
    return status if status in CHECKOUT_STATUSES else ""


@dataclass(frozen=True)
class RefundState:
    """A refund object (`POST /refunds`, `GET /refunds/{id}`, a `refund.*` event). It names no
    payment: the re_ id is the only link to ours."""

    refund_id: str
    status: str  # pending | succeeded | failed | voided | "" when missing or unknown
    customer_refunded: Decimal | None = None
    account_refunded: Decimal | None = None
    currency: str = ""
    created_at: datetime | None = None


REFUND_STATUSES = ("pending", "succeeded", "failed", "voided")


def refund_state_from(data: JsonObject) -> RefundState:
    refund_id = recurrente_id(data.get("id"), "re_")
    if not refund_id:
        raise PayloadError("refund without a refund id (re_…)")
    status = as_str(data.get("status"), limit=20).lower()
    return RefundState(
        refund_id=refund_id,
        status=status if status in REFUND_STATUSES else "",
        customer_refunded=_cents(data.get("customer_refunded_amount_in_cents")),
        account_refunded=_cents(data.get("account_refunded_amount_in_cents")),
        currency=as_str(data.get("currency"), limit=3).upper(),
        created_at=created_at(data),
    )


def _cents(value: object) -> Decimal | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return from_cents(value)
    return None


def payment_references_of(payload: JsonObject) -> dict[str, str]:
    """Whatever payment ids a payload of unknown shape (a dispute) carries: pa_, in_, ch_."""
    found = {"payment_id": "", "intent_id": "", "checkout_id": checkout_id_of(payload)}
    for key in ("payment", "payment_intent", "intent"):
        nested = as_dict(payload.get(key)).get("id")
        found["payment_id"] = found["payment_id"] or recurrente_id(nested, "pa_")
        found["intent_id"] = found["intent_id"] or recurrente_id(nested, "in_")
    for key in ("payment_id", "payment_intent_id", "intent_id", "id"):
        found["payment_id"] = found["payment_id"] or recurrente_id(payload.get(key), "pa_")
        found["intent_id"] = found["intent_id"] or recurrente_id(payload.get(key), "in_")
    return found
