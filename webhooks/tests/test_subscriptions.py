from decimal import Decimal

import pytest

from checkout.models import CheckoutSession, Payment, Subscription
from checkout.recurrente import RecurrenteNotFound, RecurrenteUnavailable
from checkout.tests.factories import CheckoutSessionFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks.models import WebhookEvent

from .helpers import payment_event, subscription_event

pytestmark = pytest.mark.django_db

SU = "su_9xk2p7qv"


class FakeRecurrente:
    def __init__(self, checkout_id="", error=None):
        self.checkout_id, self.error, self.calls = checkout_id, error, []

    def get_subscription(self, subscription_id):
        self.calls.append(subscription_id)
        if self.error:
            raise self.error
        body = recurrente_fixture("api/get_subscription.response.json")
        body["checkout"]["id"] = self.checkout_id
        return body


@pytest.fixture
def hosting_session(db):
    owner = CustomerFactory(email="maria.lopez@example.com")
    site = SiteFactory(status=Site.Status.OWNED, owner=owner)
    return CheckoutSessionFactory(
        site=site, kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"), user=owner,
        customer_email=owner.email, recurrente_checkout_id="ch_r2m9wq8z4kx7t1ce",
    )


@pytest.fixture
def api(monkeypatch, hosting_session):
    fake = FakeRecurrente(checkout_id=hosting_session.recurrente_checkout_id)
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    return fake


def first_payment(session, payment_id="pa_h3k8r2mz"):
    return payment_event("payment_intent.succeeded.subscription.json", session=session, payment_id=payment_id, subscription_id=SU)


def test_subscription_create_before_its_payment(hosting_session, api, deliver):
    deliver(subscription_event())
    subscription = Subscription.objects.get(recurrente_subscription_id=SU)
    assert subscription.status == Subscription.Status.ACTIVE
    assert subscription.site_id == hosting_session.site_id and subscription.user == hosting_session.user
    assert subscription.current_period_end is not None and subscription.last_event_at is not None
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE
    assert CheckoutSession.objects.get(pk=hosting_session.pk).status == CheckoutSession.Status.COMPLETED
    assert api.calls == [SU]

    deliver(first_payment(hosting_session))
    payment = Payment.objects.get()
    assert (payment.kind, payment.subscription, payment.amount) == (Payment.Kind.SUBSCRIPTION, subscription, Decimal("95.00"))
    assert Subscription.objects.count() == 1
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}


def test_the_first_payment_before_subscription_create(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    subscription = Subscription.objects.get(recurrente_subscription_id=SU)
    assert subscription.status == Subscription.Status.ACTIVE
    assert Payment.objects.get().subscription == subscription
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE

    deliver(subscription_event())
    assert api.calls == []  # the recorded payment already linked su_… to our checkout
    assert Subscription.objects.count() == 1
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE


def test_an_older_event_never_overwrites_a_newer_state(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.cancel.json"))  # 2027-01-02
    deliver(subscription_event("subscription.past_due.json"))  # 2026-12-21, delivered late
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.CANCELLED and subscription.cancelled_at is not None
    assert WebhookEvent.objects.filter(event_type="subscription.past_due").get().status == WebhookEvent.Status.PROCESSED


def test_pause_suspends_the_site_and_unpause_brings_it_back(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.pause.json"))
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.SUSPENDED
    assert Subscription.objects.get().status == Subscription.Status.PAUSED
    deliver(subscription_event("subscription.unpause.json"))
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE


def test_past_due_keeps_the_site_live(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.past_due.json"))
    assert Subscription.objects.get().status == Subscription.Status.PAST_DUE
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE


def test_a_renewal_payment_adds_a_payment_to_the_known_subscription(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    renewal = payment_event(
        "payment_intent.succeeded.subscription.json", checkout_id="ch_renewal0000001", payment_id="pa_month2", subscription_id=SU
    )
    renewal["created_at"] = "2026-12-21T09:02:17.101-06:00"
    deliver(renewal)
    subscription = Subscription.objects.get()
    assert sorted(subscription.payments.values_list("recurrente_payment_id", flat=True)) == ["pa_h3k8r2mz", "pa_month2"]
    assert Payment.objects.get(recurrente_payment_id="pa_month2").user == hosting_session.user


def test_a_subscription_recurrente_does_not_know_is_ignored(hosting_session, monkeypatch, deliver):
    fake = FakeRecurrente(error=RecurrenteNotFound("no", status=404))
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    deliver(subscription_event(subscription_id="su_unknown1"))
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED and "unknown_subscription" in event.error
    assert Subscription.objects.count() == 0


def test_recurrente_unavailable_fails_the_event_for_a_retry(hosting_session, monkeypatch, deliver):
    fake = FakeRecurrente(error=RecurrenteUnavailable("timeout"))
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    deliver(subscription_event())
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.FAILED and "RecurrenteUnavailable" in event.error
    assert event.next_retry_at is not None


def test_a_first_payment_naming_no_subscription_is_linked_when_subscription_create_arrives(hosting_session, api, deliver):
    payload = first_payment(hosting_session)
    for holder in (payload["payment"], payload["checkout"]["payment"]):
        holder["paymentable"] = {"type": "OneTimePayment", "id": "on_x"}
    deliver(payload)
    assert Payment.objects.get().subscription is None
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.OWNED  # nothing says it is live yet

    deliver(subscription_event())
    subscription = Subscription.objects.get()
    assert Payment.objects.get().subscription == subscription
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE
    assert api.calls == []
