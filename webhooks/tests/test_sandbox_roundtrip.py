"""The built-in sandbox's real deliveries (signed, sent over 'HTTP') go through intake and
processing end to end: the laptop flow of `make run`, minus the network."""

from decimal import Decimal

import pytest
from django.test import Client

from checkout import sandbox
from checkout.models import CheckoutSession, Payment, Subscription
from checkout.tests.factories import CheckoutSessionFactory
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks.models import WebhookEvent

from .helpers import http_headers

pytestmark = pytest.mark.django_db


class _Answer:
    def __init__(self, status_code):
        self.status_code = status_code


@pytest.fixture
def http_to_test_client(monkeypatch, settings):
    """Route the sandbox's requests.post to our own URLconf through the test client."""
    sent = []

    def post(url, data, headers, timeout):
        assert url.startswith(settings.SITE_URL)
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        response = Client().post(url.removeprefix(settings.SITE_URL), data=data, content_type="application/json", **http_headers(extra))
        sent.append((headers["svix-id"], response.status_code))
        return _Answer(response.status_code)

    monkeypatch.setattr(sandbox.requests, "post", post)
    return sent


def _sandbox_session(site, *, kind, cents, recurring, user=None, email="buyer@example.com"):
    item = {"name": "Website", "amount_in_cents": cents, "currency": "USD", "quantity": 1,
            "charge_type": "recurring" if recurring else "one_time"}
    if recurring:
        item.update(billing_interval="month", billing_interval_count=1)
    created = sandbox.SandboxClient().create_checkout({
        "items": [item], "success_url": "http://testserver/checkout/success/", "cancel_url": "http://testserver/",
        "metadata": {"kind": kind},
    })
    return CheckoutSessionFactory(
        site=site, kind=kind, amount=Decimal(cents) / 100, recurrente_checkout_id=created["id"], user=user, customer_email=email,
    )


def test_a_sandbox_purchase_is_fulfilled_once(http_to_test_client, django_capture_on_commit_callbacks):
    site = SiteFactory()
    session = _sandbox_session(site, kind=CheckoutSession.Kind.PURCHASE, cents=49500, recurring=False)
    with django_capture_on_commit_callbacks(execute=True):
        sandbox.sandbox_checkout_pay(checkout_id=session.recurrente_checkout_id)

    assert [status for _, status in http_to_test_client] == [200, 200]  # legacy + unified
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}
    assert Payment.objects.count() == 1
    site.refresh_from_db()
    assert site.status == Site.Status.OWNED and site.owner.email == "buyer@example.com"


def test_a_sandbox_hosting_subscription_activates_the_site(http_to_test_client, django_capture_on_commit_callbacks):
    owner = CustomerFactory()
    site = SiteFactory(status=Site.Status.OWNED, owner=owner)
    session = _sandbox_session(site, kind=CheckoutSession.Kind.SUBSCRIPTION, cents=9500, recurring=True, user=owner, email=owner.email)
    with django_capture_on_commit_callbacks(execute=True):
        sandbox.sandbox_checkout_pay(checkout_id=session.recurrente_checkout_id)

    # subscription.create arrives first and is resolved through GET /subscriptions/{id}.
    assert [status for _, status in http_to_test_client] == [200, 200]
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.ACTIVE and subscription.current_period_end is not None
    assert Payment.objects.get().subscription == subscription
    site.refresh_from_db()
    assert site.status == Site.Status.ACTIVE
