from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from checkout.models import CheckoutSession
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory, SubscriptionFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_payment_is_unique_on_recurrente_payment_id():
    PaymentFactory(recurrente_payment_id="pa_ttr2w9xk")
    with pytest.raises(IntegrityError):
        PaymentFactory(recurrente_payment_id="pa_ttr2w9xk")


def test_subscription_is_unique_on_su_id():
    SubscriptionFactory(recurrente_subscription_id="su_9xk2p7qv")
    with pytest.raises(IntegrityError):
        SubscriptionFactory(recurrente_subscription_id="su_9xk2p7qv")


def test_webhook_event_is_unique_on_delivery_id():
    WebhookEvent.objects.create(delivery_id="msg_1", event_type="x", raw_body="{}", payload={})
    with pytest.raises(IntegrityError):
        WebhookEvent.objects.create(delivery_id="msg_1", event_type="x", raw_body="{}", payload={})


def test_checkout_created_requires_a_checkout_id():
    with pytest.raises(IntegrityError):
        CheckoutSessionFactory(status=CheckoutSession.Status.CHECKOUT_CREATED, recurrente_checkout_id=None)


def test_amounts_are_decimals_and_positive():
    session = CheckoutSessionFactory(amount=Decimal("445.50"))
    session.refresh_from_db()
    assert session.amount == Decimal("445.50") and isinstance(session.amount, Decimal)
    with pytest.raises(IntegrityError), transaction.atomic():
        CheckoutSessionFactory(amount=Decimal("0"))


@pytest.mark.postgres
def test_abandoned_scan_partial_index_exists_on_postgres():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'checkout_abandoned_scan_idx'")
        (indexdef,) = cursor.fetchone()
    assert "(created_at, status, reminder_sent_at)" in indexdef
    assert "WHERE" in indexdef and "'checkout_created'" in indexdef
