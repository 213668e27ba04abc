from decimal import Decimal

import factory
from django.utils import timezone

from checkout.models import CheckoutSession, Payment, Subscription
from sites.tests.factories import SiteFactory


class CheckoutSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CheckoutSession

    site = factory.SubFactory(SiteFactory)
    customer_name = "María López"
    customer_email = factory.Sequence(lambda n: f"buyer{n}@example.com")
    amount = Decimal("495.00")
    status = CheckoutSession.Status.CHECKOUT_CREATED
    recurrente_checkout_id = factory.Sequence(lambda n: f"ch_test{n:08d}")
    checkout_url = factory.LazyAttribute(lambda o: f"https://app.recurrente.com/checkout-session/{o.recurrente_checkout_id}")


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    recurrente_subscription_id = factory.Sequence(lambda n: f"su_test{n:06d}")
    site = factory.SubFactory(SiteFactory)
    status = Subscription.Status.ACTIVE


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    recurrente_payment_id = factory.Sequence(lambda n: f"pa_test{n:06d}")
    kind = Payment.Kind.PURCHASE
    site = factory.SubFactory(SiteFactory)
    amount = Decimal("495.00")
    currency = "USD"
    paid_at = factory.LazyFunction(timezone.now)
