"""Buying while the rate-limit cache (Redis) is down: the purchase form, the recovery link and the
portal's hosting actions fail open. The buyer is served as usual, uncounted, with a warning in the
log and no error mail (webmagic/ratelimit.py). With the cache up, the limits apply."""

import logging

import pytest
from django.core import mail
from django.utils import timezone
from freezegun import freeze_time

from checkout.models import CheckoutSession
from checkout.tests.test_recovery_link import recover_url, reminded_session
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webmagic.tests.outage import cache_unreachable

pytestmark = pytest.mark.django_db

PURCHASE = "/sites/la-plumbing-pros/purchase/"


@pytest.fixture
def cache_down(settings):
    cache_unreachable(settings)


def test_a_purchase_goes_to_recurrente_as_usual(client, preview_site, checkout_created, cache_down, caplog):
    with caplog.at_level(logging.WARNING, logger="webmagic.ratelimit"):
        response = client.post(PURCHASE, {"full_name": "María López", "email": "maria@example.com"}, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 303
    assert response["Location"] == "https://app.recurrente.com/checkout-session/ch_created0001"
    session = CheckoutSession.objects.get()
    assert session.status == CheckoutSession.Status.CHECKOUT_CREATED and session.customer_email == "maria@example.com"
    assert "checkout.views.purchase cannot count (ConnectionError): serving unlimited" in caplog.text
    assert mail.outbox == []


def test_the_purchase_form_is_not_limited_while_nothing_can_count(client, preview_site, cache_down):
    statuses = {client.post(PURCHASE, {"full_name": "", "email": ""}).status_code for _ in range(12)}
    assert statuses == {400}  # the form's own answer every time: no 429, no 500


def test_the_recovery_link_still_opens_the_discounted_checkout(client, preview_site, checkout_created, cache_down):
    original = reminded_session(preview_site)
    response = client.get(recover_url(original))
    assert response.status_code == 303
    assert response["Location"] == "https://app.recurrente.com/checkout-session/ch_created0001"
    child = CheckoutSession.objects.get(recovered_from=original)
    assert child.discount_percent == 10 and child.checkout_url == response["Location"]
    assert mail.outbox == []


def test_the_recovery_link_is_limited_while_the_cache_is_up(client, preview_site, checkout_created):
    original = reminded_session(preview_site)
    with freeze_time(timezone.now()):  # one rate-limit window
        statuses = [client.get(recover_url(original), REMOTE_ADDR="203.0.113.9").status_code for _ in range(31)]
        assert client.get(recover_url(original), REMOTE_ADDR="203.0.113.10").status_code == 303
    assert statuses[:30] == [303] * 30 and statuses[30] == 429


def test_an_owner_can_still_start_hosting(client, checkout_created, cache_down):
    owner = CustomerFactory(email="maria.lopez@example.com", recurrente_customer_id="us_4hz8mq2c")
    SiteFactory(slug="la-plumbing-pros", status=Site.Status.OWNED, owner=owner)
    client.force_login(owner)
    response = client.post("/portal/sites/la-plumbing-pros/hosting/start/")
    assert response.status_code == 303 and response["Location"].startswith("https://app.recurrente.com/checkout-session/")
    assert CheckoutSession.objects.get().kind == "subscription"
