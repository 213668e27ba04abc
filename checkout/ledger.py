"""The payment ledger: the value objects every confirmation travels in, and the rows it writes.

Recurrente's data is translated once (checkout/recurrente_data.py) into a `PaymentConfirmation`;
the dispatcher (confirmations.py) hands it to the purchase or hosting path, and both write their
`Payment` row and complete their `CheckoutSession` through the helpers here. This module imports
no other service, so payments.py and subscriptions.py both build on it without importing each
other.
"""

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from checkout.models import CheckoutSession, Payment, Subscription
from customers.models import CustomerUser
from sites.models import Site
from webmagic.money import from_cents

logger = logging.getLogger(__name__)


class CheckoutSessionNotFound(Exception):
    """A confirmed payment for a checkout we cannot find. Worth retrying (our row may not be
    committed yet) and, if it never appears, worth a person's attention: money was taken."""


class Outcome(enum.StrEnum):
    FULFILLED = "fulfilled"
    DUPLICATE = "duplicate"
    AMOUNT_MISMATCH = "amount_mismatch"
    NEEDS_REFUND = "needs_refund"
    SUBSCRIPTION_PAYMENT = "subscription_payment"
    RECORDED = "recorded"
    STALE = "stale"
    UNKNOWN_CHECKOUT = "unknown_checkout"
    UNKNOWN_PAYMENT = "unknown_payment"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    UNMATCHED = "unmatched"  # kept for staff to match by hand (a refund or dispute naming nothing of ours)


# Outcomes that mean "nothing of ours to change": a webhook reporting one is marked ignored.
UNKNOWN_OUTCOMES = frozenset({Outcome.UNKNOWN_CHECKOUT, Outcome.UNKNOWN_PAYMENT, Outcome.UNKNOWN_SUBSCRIPTION})


@dataclass(frozen=True)
class PaymentConfirmation:
    """A successful payment as Recurrente reported it."""

    payment_id: str  # pa_…: the same in the legacy and unified events of one payment
    amount_cents: int
    currency: str
    checkout_id: str = ""  # ch_…
    intent_id: str = ""  # in_…
    subscription_id: str = ""  # su_… when the payment belongs to a subscription
    method: str = ""
    card_last4: str = ""
    customer_email: str = ""
    customer_name: str = ""
    customer_id: str = ""
    metadata_session_id: str = ""  # checkout.metadata.checkout_session_id: a cross-check only
    paid_at: datetime | None = None
    source: str = "webhook"  # Payment.Source: how we learnt of it


def payment_row_create(
    *, confirmation: PaymentConfirmation, kind: str, site: Site, session: CheckoutSession | None = None,
    user: CustomerUser | None = None, subscription: Subscription | None = None, flag: str = Payment.Flag.NONE,
    flag_note: str = "",
) -> Payment | None:
    """Insert the payment row, or return None if it already exists (unique on pa_…)."""
    try:
        with transaction.atomic():
            return Payment.objects.create(
                recurrente_payment_id=confirmation.payment_id,
                recurrente_intent_id=confirmation.intent_id[:64],
                recurrente_checkout_id=confirmation.checkout_id[:64],
                kind=kind, site=site, user=user, checkout_session=session, subscription=subscription,
                amount=from_cents(confirmation.amount_cents), currency=confirmation.currency.upper()[:3],
                flag=flag, flag_note=flag_note[:500], payment_method=confirmation.method[:32],
                card_last4=confirmation.card_last4[:4], paid_at=confirmation.paid_at or timezone.now(),
                recorded_from=confirmation.source,
            )
    except IntegrityError:
        if Payment.objects.filter(recurrente_payment_id=confirmation.payment_id).exists():
            return None
        raise


def payment_fill_intent(*, payment: Payment, intent_id: str) -> None:
    """The unified event knows the in_… id (refunds may need it); the legacy one may not."""
    if intent_id and not payment.recurrente_intent_id:
        Payment.objects.filter(pk=payment.pk, recurrente_intent_id="").update(
            recurrente_intent_id=intent_id[:64], updated_at=timezone.now()
        )


def payment_metadata_cross_check(*, session: CheckoutSession, confirmation: PaymentConfirmation) -> None:
    """Metadata never finds our records; a disagreement is logged for a person to look at."""
    if confirmation.metadata_session_id and confirmation.metadata_session_id != str(session.pk):
        logger.warning(
            "payment %s: checkout %s belongs to session %s but its metadata names session %s",
            confirmation.payment_id, confirmation.checkout_id, session.pk, confirmation.metadata_session_id[:64],
        )


def checkout_session_complete(
    *, session: CheckoutSession, user: CustomerUser | None = None, owner: bool = False,
) -> None:
    """The buyer paid: the session is completed, whatever it was (an `abandoned` or `expired`
    session still completes: a late payment). The caller holds the session row locked.

    `user` is kept on the session: always when it is the site's new `owner` (a purchase: the
    session then names whoever owns what it bought), otherwise only if the session names no one
    (hosting: the owner who started it stays)."""
    session.status = CheckoutSession.Status.COMPLETED
    session.completed_at = timezone.now()
    fields = ["status", "completed_at", "updated_at"]
    if user is not None and (owner or session.user_id is None):
        session.user = user
        fields.append("user")
    session.save(update_fields=fields)
