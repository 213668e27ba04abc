"""The one translator of Recurrente's JSON (checkout/recurrente_data.py), tested once against every
shape one payment reaches us in: the legacy webhook, the unified webhook, and the API's
`GET /checkouts/{id}` that reconciliation reads. All must name the same payment the same way, or
one card payment would be recorded twice, or reconciliation would disagree with webhooks."""

import pytest

from checkout.ledger import PaymentConfirmation
from checkout.recurrente_data import PayloadError, payment_confirmation_from_checkout, payment_confirmation_from_event
from checkout.tests.fixtures import recurrente_fixture

# What every shape must agree on: how the payment is found and what it was for.
IDENTITY = ("payment_id", "amount_cents", "currency", "checkout_id", "intent_id", "subscription_id", "metadata_session_id")


def identity(confirmation: PaymentConfirmation) -> tuple:
    return tuple(getattr(confirmation, name) for name in IDENTITY)


def test_legacy_unified_and_api_shapes_of_one_card_payment_read_the_same():
    legacy = payment_confirmation_from_event(recurrente_fixture("events/payment_intent.succeeded.purchase.json"))
    unified = payment_confirmation_from_event(recurrente_fixture("events/intent.succeeded.purchase.json"))
    answer = payment_confirmation_from_checkout(recurrente_fixture("api/get_checkout.paid.response.json"))
    assert identity(legacy) == identity(unified) == identity(answer) == (
        "pa_ttr2w9xk", 49500, "USD", "ch_8kq3vx2pmt7w1nza", "in_y7c2p4lq", "", "9b2f6c1e-4d7a-4a51-8f0e-2c6b1d9e7a30",
    )
    assert (legacy.source, unified.source, answer.source) == ("webhook", "webhook", "reconciliation")
    # The card shows where each shape carries it (the unified event does not).
    assert (legacy.method, legacy.card_last4) == (answer.method, answer.card_last4) == ("card", "4242")
    assert legacy.paid_at is not None and answer.paid_at is not None


def test_a_hosting_payment_names_its_subscription():
    hosting = payment_confirmation_from_event(recurrente_fixture("events/payment_intent.succeeded.subscription.json"))
    assert (hosting.payment_id, hosting.subscription_id, hosting.amount_cents) == ("pa_h3k8r2mz", "su_9xk2p7qv", 9500)


def test_a_bank_transfer_reads_like_a_card_payment_of_the_same_checkout():
    transfer = payment_confirmation_from_event(recurrente_fixture("events/bank_transfer_intent.succeeded.json"))
    assert (transfer.checkout_id, transfer.amount_cents, transfer.method) == ("ch_8kq3vx2pmt7w1nza", 49500, "bank_transfer_receiver")


@pytest.mark.parametrize("breakage", [
    # The pa_ id stands in three places in the legacy event: all gone.
    lambda body: (body["payment"].pop("id"), body["checkout"]["payment"].pop("id"), body.update(id="evt_1")),
    lambda body: body.update(amount_in_cents="49500"),
    lambda body: body.update(amount_in_cents=0),
    lambda body: body.update(currency="dollars"),
    lambda body: (body["checkout"].pop("id"), body["payment"].pop("paymentable", None)),
])
def test_a_field_we_cannot_read_is_a_payload_error_in_either_shape(breakage):
    event = recurrente_fixture("events/payment_intent.succeeded.purchase.json")
    breakage(event)
    with pytest.raises(PayloadError):
        payment_confirmation_from_event(event)


def test_an_api_answer_without_its_payment_is_a_payload_error():
    answer = recurrente_fixture("api/get_checkout.paid.response.json")
    answer.pop("payment")
    answer.pop("latest_intent")
    with pytest.raises(PayloadError):
        payment_confirmation_from_checkout(answer)
