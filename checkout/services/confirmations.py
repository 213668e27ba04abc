"""Every succeeded payment enters here, however we learnt of it (a webhook, the reconciler).

The dispatcher finds what the payment was for by Recurrente's ids and hands it to the path that
owns it: a purchase (payments.py) or hosting (subscriptions.py). Both build on ledger.py.
"""

import logging

from checkout.ledger import CheckoutSessionNotFound, Outcome, PaymentConfirmation, payment_fill_intent, payment_metadata_cross_check
from checkout.models import CheckoutSession, Payment

from . import payments, subscriptions

logger = logging.getLogger(__name__)


def payment_confirmed_record(*, confirmation: PaymentConfirmation) -> Outcome:
    """Entry point for every succeeded payment: purchase, first hosting payment or renewal."""
    existing = Payment.objects.filter(recurrente_payment_id=confirmation.payment_id).first()
    if existing is not None:
        payment_fill_intent(payment=existing, intent_id=confirmation.intent_id)
        logger.info("payment %s already recorded; nothing to do", confirmation.payment_id)
        return Outcome.DUPLICATE

    session = None
    if confirmation.checkout_id:
        session = CheckoutSession.objects.filter(recurrente_checkout_id=confirmation.checkout_id).first()
    if session is None:
        if confirmation.subscription_id:
            return subscriptions.subscription_payment_record(confirmation=confirmation, session=None)
        raise CheckoutSessionNotFound(
            f"payment {confirmation.payment_id}: no checkout session for checkout {confirmation.checkout_id or '(none)'}"
        )
    payment_metadata_cross_check(session=session, confirmation=confirmation)
    if session.kind == CheckoutSession.Kind.SUBSCRIPTION:
        return subscriptions.subscription_payment_record(confirmation=confirmation, session=session)
    if confirmation.subscription_id:
        logger.warning(
            "payment %s names subscription %s but checkout %s is purchase session %s; treating it as a purchase",
            confirmation.payment_id, confirmation.subscription_id, confirmation.checkout_id, session.pk,
        )
    return payments.purchase_payment_record(session=session, confirmation=confirmation)
