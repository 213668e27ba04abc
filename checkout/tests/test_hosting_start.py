"""Starting hosting from the portal (DESIGN §6): POST /portal/sites/<slug>/hosting/start/."""

import json
from decimal import Decimal

import pytest
import responses as responses_lib
from django.contrib.messages import get_messages
from django.urls import reverse

from checkout.models import CheckoutSession, Subscription
from checkout.services.hosting import HostingNotOwner, HostingRefused, hosting_checkout_start
from checkout.tests.factories import CheckoutSessionFactory, SubscriptionFactory
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory

from .conftest import API

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(db):
    return CustomerFactory(email="maria.lopez@example.com", full_name="María López", recurrente_customer_id="us_4hz8mq2c")


@pytest.fixture
def owned_site(owner):
    return SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros", status=Site.Status.OWNED, owner=owner)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def start_url(site):
    return reverse("hosting:start", kwargs={"slug": site.slug})


def sent_checkouts(mock):
    return [json.loads(call.request.body) for call in mock.calls if call.request.method == "POST"]


def flash(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_url_names_are_the_ones_the_portal_links_to(owned_site):
    assert start_url(owned_site) == "/portal/sites/la-plumbing-pros/hosting/start/"
    assert reverse("hosting:cancel", kwargs={"slug": "la-plumbing-pros"}) == "/portal/sites/la-plumbing-pros/hosting/cancel/"


def test_starting_hosting_creates_one_recurring_checkout_and_redirects_to_it(owner_client, owned_site, owner, checkout_created, settings):
    response = owner_client.post(start_url(owned_site))

    assert response.status_code == 303
    session = CheckoutSession.objects.get()
    assert response["Location"] == session.checkout_url == "https://app.recurrente.com/checkout-session/ch_created0001"
    assert (session.kind, session.status, session.amount, session.user) == (
        CheckoutSession.Kind.SUBSCRIPTION, CheckoutSession.Status.CHECKOUT_CREATED, Decimal("95.00"), owner,
    )
    assert (session.customer_email, session.customer_name) == ("maria.lopez@example.com", "María López")
    [body] = sent_checkouts(checkout_created)
    assert body["items"] == [{
        "name": "Website hosting — LA Plumbing Pros", "amount_in_cents": 9500, "currency": "USD", "quantity": 1,
        "charge_type": "recurring", "billing_interval": "month", "billing_interval_count": 1, "payment_method_types": ["card"],
    }]
    # Back through the "returned" view, which asks Recurrente at once, then the portal's notice.
    assert body["success_url"] == "http://testserver/portal/sites/la-plumbing-pros/hosting/returned/"
    assert body["cancel_url"] == "http://testserver/portal/sites/la-plumbing-pros/"
    assert body["user_id"] == "us_4hz8mq2c"
    assert body["metadata"]["kind"] == "subscription"
    assert body["metadata"]["checkout_session_id"] == str(session.pk)
    assert all(isinstance(value, str) for value in body["metadata"].values())
    assert Site.objects.get(pk=owned_site.pk).status == Site.Status.OWNED  # only webhook-confirmed money moves it


def test_the_price_comes_from_the_site(owner_client, owned_site, checkout_created):
    Site.objects.filter(pk=owned_site.pk).update(monthly_amount=Decimal("79.50"))
    owner_client.post(start_url(owned_site))
    [body] = sent_checkouts(checkout_created)
    assert body["items"][0]["amount_in_cents"] == 7950


def test_no_user_id_when_recurrente_does_not_know_the_customer(client, checkout_created):
    owner = CustomerFactory(recurrente_customer_id="")
    site = SiteFactory(status=Site.Status.OWNED, owner=owner)
    client.force_login(owner)
    client.post(start_url(site))
    [body] = sent_checkouts(checkout_created)
    assert "user_id" not in body


def test_a_second_click_reuses_the_open_checkout(owner_client, owned_site, checkout_created):
    first = owner_client.post(start_url(owned_site))
    second = owner_client.post(start_url(owned_site))
    assert first["Location"] == second["Location"]
    assert CheckoutSession.objects.count() == 1 and len(sent_checkouts(checkout_created)) == 1


def test_a_suspended_site_can_start_hosting_again(owner_client, owned_site, checkout_created):
    Site.objects.filter(pk=owned_site.pk).update(status=Site.Status.SUSPENDED)
    SubscriptionFactory(site=owned_site, status=Subscription.Status.PAUSED)  # the old one does not block
    response = owner_client.post(start_url(owned_site))
    assert response.status_code == 303 and response["Location"].startswith("https://app.recurrente.com/")


@pytest.mark.parametrize("status", [Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE, Subscription.Status.PENDING])
def test_an_open_subscription_refuses_a_second_one(owner_client, owned_site, checkout_created, status):
    SubscriptionFactory(site=owned_site, status=status)
    response = owner_client.post(start_url(owned_site))
    assert response.status_code == 303 and response["Location"] == "/portal/sites/la-plumbing-pros/"
    assert "already has a hosting subscription" in flash(response)[0]
    assert CheckoutSession.objects.count() == 0 and sent_checkouts(checkout_created) == []


def test_an_active_site_is_not_started_again(owner_client, owned_site, checkout_created):
    Site.objects.filter(pk=owned_site.pk).update(status=Site.Status.ACTIVE)
    response = owner_client.post(start_url(owned_site))
    assert response["Location"] == "/portal/sites/la-plumbing-pros/"
    assert "already active" in flash(response)[0]
    assert CheckoutSession.objects.count() == 0


def test_recurrente_failing_shows_a_clear_message_and_keeps_the_attempt(owner_client, owned_site, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/checkouts", json={"message": "boom"}, status=500)
    response = owner_client.post(start_url(owned_site))
    assert response.status_code == 303 and response["Location"] == "/portal/sites/la-plumbing-pros/"
    assert "couldn't open the payment page" in flash(response)[0]
    session = CheckoutSession.objects.get()
    assert session.status == CheckoutSession.Status.INITIATED and "RecurrenteUnavailable" in session.checkout_error


def test_someone_else_gets_404(client, owned_site, checkout_created):
    client.force_login(CustomerFactory())
    assert client.post(start_url(owned_site)).status_code == 404
    assert client.post(reverse("hosting:start", kwargs={"slug": "no-such-site"})).status_code == 404
    assert CheckoutSession.objects.count() == 0


def test_staff_cannot_start_hosting_for_an_owner(staff_client, owned_site, checkout_created):
    assert staff_client.post(start_url(owned_site)).status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client, owned_site, settings):
    settings.LOGIN_URL = "/portal/login/"
    response = client.post(start_url(owned_site))
    assert response.status_code == 302 and response["Location"].startswith("/portal/login/?next=")
    assert CheckoutSession.objects.count() == 0


def test_an_unverified_email_is_sent_to_the_portal(client, owner, owned_site, checkout_created):
    owner.email_verified = False
    owner.save()
    client.force_login(owner)
    response = client.post(start_url(owned_site))
    assert response.status_code == 302 and response["Location"] == "/portal/"
    assert CheckoutSession.objects.count() == 0


def test_get_is_not_allowed(owner_client, owned_site):
    assert owner_client.get(start_url(owned_site)).status_code == 405


def test_the_service_refuses_a_non_owner_and_a_preview(owner, checkout_created):
    preview = SiteFactory()
    with pytest.raises(HostingNotOwner):
        hosting_checkout_start(site_id=preview.pk, user=owner)
    other = SiteFactory(status=Site.Status.OWNED, owner=CustomerFactory())
    with pytest.raises(HostingNotOwner):
        hosting_checkout_start(site_id=other.pk, user=owner)


def test_an_expired_open_checkout_is_not_reused(owner_client, owned_site, owner, checkout_created):
    old = CheckoutSessionFactory(site=owned_site, kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"), user=owner)
    CheckoutSession.objects.filter(pk=old.pk).update(created_at=old.created_at.replace(year=2025))
    response = owner_client.post(start_url(owned_site))
    assert response["Location"] != old.checkout_url
    assert CheckoutSession.objects.count() == 2


def test_a_purchase_checkout_is_never_reused_for_hosting(owner_client, owned_site, owner, checkout_created):
    CheckoutSessionFactory(site=owned_site, kind=CheckoutSession.Kind.PURCHASE, customer_email=owner.email)
    owner_client.post(start_url(owned_site))
    assert CheckoutSession.objects.filter(kind=CheckoutSession.Kind.SUBSCRIPTION).count() == 1


def test_hosting_refused_is_a_message_for_people(owner, owned_site):
    SubscriptionFactory(site=owned_site, status=Subscription.Status.ACTIVE)
    with pytest.raises(HostingRefused) as exc:
        hosting_checkout_start(site_id=owned_site.pk, user=owner)
    assert "already has a hosting subscription" in str(exc.value)
