import io
import zipfile
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import NoReverseMatch
from django.utils import timezone

from checkout.models import Payment, Subscription
from checkout.tests.factories import PaymentFactory, SubscriptionFactory
from customers.tests.factories import CustomerFactory
from portal import selectors
from sites.models import Site
from sites.tests.factories import SiteFactory, SiteVersionFactory

pytestmark = pytest.mark.django_db

WITH_HOSTING_ROUTES = pytest.mark.urls("portal.tests.urls_with_hosting")


def owned_site(owner, status=Site.Status.OWNED, **kwargs):
    return SiteFactory(owner=owner, status=status, purchased_at=timezone.now(), **kwargs)


def subscription(site, status=Subscription.Status.ACTIVE, **kwargs):
    kwargs.setdefault("current_period_end", timezone.now() + timedelta(days=20))
    return SubscriptionFactory(site=site, user=site.owner, status=status, **kwargs)


def html(response) -> str:
    return response.content.decode()


# --- Dashboard -----------------------------------------------------------------------------------

@WITH_HOSTING_ROUTES
def test_a_customer_with_several_sites_sees_them_all_with_state_and_next_action(customer_client, customer):
    owned = owned_site(customer, slug="tacos-ana", business_name="Tacos Ana")
    live = owned_site(customer, Site.Status.ACTIVE, slug="la-plumbing", business_name="LA Plumbing")
    subscription(live, current_period_end=timezone.now().replace(year=2031, month=3, day=14))
    offline = owned_site(customer, Site.Status.SUSPENDED, slug="nails-by-jo", business_name="Nails by Jo")
    subscription(offline, Subscription.Status.CANCELLED)

    body = html(customer_client.get("/portal/"))

    for site in (owned, live, offline):
        assert site.business_name in body
        assert f'href="/sites/{site.slug}/"' in body and f'href="/portal/sites/{site.slug}/"' in body
    assert 'class="status-pill status-owned"' in body and 'class="status-pill status-active"' in body
    assert 'class="status-pill status-suspended"' in body
    assert 'action="/portal/sites/tacos-ana/hosting/start/"' in body and "Activate hosting — $95/month" in body
    assert "Next renewal on <strong>March 14, 2031</strong>" in body
    assert 'href="/portal/sites/la-plumbing/hosting/cancel/"' in body and "Cancel hosting" in body
    assert 'action="/portal/sites/nails-by-jo/hosting/start/"' in body and "Reactivate hosting" in body


def test_a_customer_sees_only_their_own_sites_and_staff_too(client, customer):
    mine = owned_site(customer, business_name="Mine Bakery")
    staff = CustomerFactory(is_staff=True, is_superuser=True)
    owned_site(staff, business_name="Staff Own Shop")
    owned_site(CustomerFactory(), business_name="Someone Else Garage")

    client.force_login(customer)
    body = html(client.get("/portal/"))
    assert mine.business_name in body and "Someone Else Garage" not in body and "Staff Own Shop" not in body

    client.force_login(staff)
    body = html(client.get("/portal/"))
    assert "Staff Own Shop" in body and "Mine Bakery" not in body and "Someone Else Garage" not in body


def test_no_sites_yet(customer_client):
    assert "No sites yet" in html(customer_client.get("/portal/"))


DASHBOARD_QUERIES = 4  # session, user, sites, their subscriptions


def _sites_in_every_state(owner, count):
    states = [
        (Site.Status.OWNED, None),
        (Site.Status.ACTIVE, Subscription.Status.ACTIVE),
        (Site.Status.ACTIVE, Subscription.Status.PAST_DUE),
        (Site.Status.SUSPENDED, Subscription.Status.PAUSED),
        (Site.Status.OWNED, Subscription.Status.PENDING),
    ]
    for n in range(count):
        status, sub_status = states[n % len(states)]
        site = owned_site(owner, status)
        SiteVersionFactory(site=site)
        if sub_status:
            subscription(site, Subscription.Status.CANCELLED)  # an older one, also prefetched
            subscription(site, sub_status)
        PaymentFactory(site=site, user=owner)


@pytest.mark.parametrize("count", [1, 5])
def test_the_dashboard_runs_a_fixed_number_of_queries(customer_client, customer, count, django_assert_num_queries):
    _sites_in_every_state(customer, count)
    with django_assert_num_queries(DASHBOARD_QUERIES):
        response = customer_client.get("/portal/")
    assert response.status_code == 200 and html(response).count('class="card site-card"') == count


SITE_PAGE_QUERIES = 5  # session, user, site, its subscriptions, payments


@pytest.mark.parametrize("payments", [1, 5])
def test_the_site_page_runs_a_fixed_number_of_queries(customer_client, customer, payments, django_assert_num_queries):
    site = owned_site(customer, Site.Status.ACTIVE, slug="steady")
    subscription(site)
    for _ in range(payments):
        PaymentFactory(site=site, user=customer, kind=Payment.Kind.SUBSCRIPTION, amount=Decimal("95.00"))
    with django_assert_num_queries(SITE_PAGE_QUERIES):
        response = customer_client.get("/portal/sites/steady/")
    assert html(response).count("/receipt/") == payments


# --- Hosting state -------------------------------------------------------------------------------

def state_of(site, *, confirming=False):
    portal_site = selectors.portal_site_for_owner(user=site.owner, slug=site.slug, confirming=confirming)
    return portal_site.hosting


@WITH_HOSTING_ROUTES
def test_hosting_states(customer):
    owned = owned_site(customer)
    assert state_of(owned).code == "not_started"
    assert [a.label for a in state_of(owned).actions] == ["Activate hosting — $95/month"]

    live = owned_site(customer, Site.Status.ACTIVE)
    active = subscription(live)
    state = state_of(live)
    assert (state.code, state.renews_on, [a.label for a in state.actions]) == ("live", active.current_period_end, ["Cancel hosting"])
    assert state.actions[0].method == "get"

    Subscription.objects.filter(pk=active.pk).update(status=Subscription.Status.PAST_DUE)
    state = state_of(live)
    assert state.code == "past_due" and state.tone == "warning"
    assert state.detail == "We couldn't charge your card; Recurrente will retry for a few days — your site stays live meanwhile."
    assert [a.label for a in state.actions] == ["Cancel hosting"]

    Subscription.objects.filter(pk=active.pk).update(status=Subscription.Status.ACTIVE, cancel_requested_at=timezone.now())
    state = state_of(live)
    assert state.code == "ending" and state.ends_on == active.current_period_end and state.actions == []

    suspended = owned_site(customer, Site.Status.SUSPENDED)
    subscription(suspended, Subscription.Status.PAUSED)
    assert [a.label for a in state_of(suspended).actions] == ["Reactivate hosting"]
    assert state_of(suspended).actions[0].method == "post"

    failed = owned_site(customer)
    subscription(failed, Subscription.Status.UNABLE_TO_START)
    assert state_of(failed).code == "unable_to_start" and state_of(failed).actions[0].url.endswith("/hosting/start/")


def test_the_newest_subscription_decides(customer):
    site = owned_site(customer, Site.Status.ACTIVE)
    subscription(site, Subscription.Status.CANCELLED)
    newer = subscription(site, Subscription.Status.ACTIVE)
    Subscription.objects.filter(pk=newer.pk).update(created_at=timezone.now() + timedelta(seconds=5))
    assert state_of(site).code == "live"


@WITH_HOSTING_ROUTES
def test_the_past_due_warning_is_visible_on_the_dashboard_and_site_page(customer_client, customer):
    site = owned_site(customer, Site.Status.ACTIVE, slug="retrying")
    subscription(site, Subscription.Status.PAST_DUE)
    for path in ("/portal/", "/portal/sites/retrying/"):
        body = html(customer_client.get(path))
        assert "We couldn&#x27;t charge your card; Recurrente will retry for a few days — your site stays live meanwhile." in body
        assert 'role="alert"' in body


@WITH_HOSTING_ROUTES
def test_cancel_requested_shows_the_end_date_and_no_cancel_link(customer_client, customer):
    site = owned_site(customer, Site.Status.ACTIVE, slug="ending")
    subscription(site, cancel_requested_at=timezone.now(), current_period_end=timezone.now().replace(year=2030, month=7, day=1))
    body = html(customer_client.get("/portal/sites/ending/"))
    assert "Hosting ends on <strong>July 1, 2030</strong>" in body and "/hosting/cancel/" not in body


@WITH_HOSTING_ROUTES
def test_back_from_the_hosting_checkout_says_confirming_until_the_webhook(customer_client, customer):
    site = owned_site(customer, slug="just-paid")
    body = html(customer_client.get("/portal/sites/just-paid/?subscription=started"))
    assert "We&#x27;re confirming your hosting payment…" in body
    assert "data-refresh-while-confirming" in body and "/hosting/start/" not in body  # no second payment offered
    site.status = Site.Status.ACTIVE
    site.save()
    subscription(site)
    body = html(customer_client.get("/portal/sites/just-paid/?subscription=started"))
    assert "confirming your hosting payment" not in body and "Your site is live" in body


def test_hosting_buttons_are_hidden_while_the_hosting_routes_do_not_exist(customer_client, customer, monkeypatch):
    def no_route(*args, **kwargs):
        raise NoReverseMatch("hosting is not installed")

    monkeypatch.setattr(selectors, "reverse", no_route)
    owned_site(customer, slug="waiting")
    response = customer_client.get("/portal/")
    body = html(response)
    assert response.status_code == 200 and "Not online yet" in body
    assert "Activate hosting —" not in body and "/hosting/start/" not in body


# --- Access control ------------------------------------------------------------------------------

@pytest.fixture
def strangers_site(db):
    stranger = CustomerFactory(email="stranger@example.com")
    site = owned_site(stranger, Site.Status.ACTIVE, slug="strangers-site", business_name="Stranger Things Shop")
    SiteVersionFactory(site=site)
    PaymentFactory(site=site, user=stranger, recurrente_payment_id="pa_stranger")
    return site


@pytest.mark.parametrize("path", [
    "/portal/sites/strangers-site/",
    "/portal/sites/strangers-site/?subscription=started",
    "/portal/sites/strangers-site/download/",
    "/portal/payments/pa_stranger/receipt/",
    "/portal/sites/no-such-site/",
    "/portal/payments/pa_nothing/receipt/",
])
def test_another_customers_site_or_payment_is_not_found(customer_client, strangers_site, path):
    response = customer_client.get(path)
    assert response.status_code == 404
    assert "Stranger Things Shop" not in html(response) and "stranger@example.com" not in html(response)


def test_staff_cannot_open_a_customers_site_in_the_portal_either(client, strangers_site):
    staff = CustomerFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    assert client.get("/portal/sites/strangers-site/").status_code == 404
    assert client.get("/portal/payments/pa_stranger/receipt/").status_code == 404


@pytest.mark.parametrize(
    "path", ["/portal/", "/portal/sites/x/", "/portal/sites/x/download/", "/portal/payments/p/receipt/", "/portal/account/"],
)
def test_anonymous_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/portal/login/?next=")


def test_a_previous_owners_payments_stay_theirs(customer_client, customer):
    previous = CustomerFactory()
    site = owned_site(customer, slug="handed-over")
    PaymentFactory(site=site, user=previous, recurrente_payment_id="pa_previous")
    PaymentFactory(site=site, user=customer, recurrente_payment_id="pa_mine")
    body = html(customer_client.get("/portal/sites/handed-over/"))
    assert "pa_mine" in body and "pa_previous" not in body
    assert customer_client.get("/portal/payments/pa_previous/receipt/").status_code == 404


def test_portal_pages_are_not_cached(customer_client, customer):
    owned_site(customer, slug="private")
    for path in ("/portal/", "/portal/sites/private/", "/portal/account/"):
        assert "no-store" in customer_client.get(path)["Cache-Control"]


# --- Site page, receipts, files ------------------------------------------------------------------

def test_the_site_page_lists_payments_with_receipts(customer_client, customer):
    site = owned_site(customer, Site.Status.ACTIVE, slug="paid-up", business_name="Paid Up Cafe")
    subscription(site)
    PaymentFactory(site=site, user=customer, recurrente_payment_id="pa_buy", paid_at=timezone.now() - timedelta(days=40))
    PaymentFactory(site=site, user=customer, recurrente_payment_id="pa_month", kind=Payment.Kind.SUBSCRIPTION,
                   amount=Decimal("95.00"), status=Payment.Status.REFUNDED)
    body = html(customer_client.get("/portal/sites/paid-up/"))
    assert body.index("pa_month") < body.index("pa_buy")  # newest first
    assert "$495<" in body and "$95<" in body and "USD" not in body and "Refunded" in body  # one money format
    assert 'href="/portal/payments/pa_buy/receipt/"' in body and 'href="/portal/sites/paid-up/download/"' in body


def test_a_receipt_is_a_printable_page(customer_client, customer):
    site = owned_site(customer, business_name="Tom & <Jerry>")
    PaymentFactory(site=site, user=customer, recurrente_payment_id="pa_receipt1", payment_method="card", card_last4="4242",
                   amount=Decimal("1495.00"))
    response = customer_client.get("/portal/payments/pa_receipt1/receipt/")
    body = html(response)
    assert response.status_code == 200
    assert "Receipt" in body and "pa_receipt1" in body and "ending in 4242" in body and "$1,495<" in body
    assert "Tom &amp; &lt;Jerry&gt;" in body and "<Jerry>" not in body
    assert "maria@example.com" in body and "data-print" in body and "js/portal.js" in body


def test_download_gives_a_zip_of_the_current_version(customer_client, customer):
    site = owned_site(customer, slug="zip-me", business_name="Zip Me Ltd")
    SiteVersionFactory(site=site, number=1, html="<p>old</p>", is_current=False)
    SiteVersionFactory(site=site, number=2, html="<h1>Current ñ</h1>", is_current=True)
    response = customer_client.get("/portal/sites/zip-me/download/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="zip-me-website.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["README.txt", "index.html"]
    assert archive.read("index.html").decode() == "<h1>Current ñ</h1>"
    readme = archive.read("README.txt").decode()
    assert "Zip Me Ltd" in readme and "version 2" in readme


def test_download_without_a_published_version_explains(customer_client, customer):
    owned_site(customer, slug="empty")
    response = customer_client.get("/portal/sites/empty/download/")
    assert response.status_code == 404 and "No files to download yet" in html(response)


# --- Links into the portal from other pages ------------------------------------------------------

def test_the_owner_bar_on_a_claimed_site_links_to_its_portal_page(customer_client, customer):
    site = owned_site(customer, slug="claimed-one")
    SiteVersionFactory(site=site)
    assert 'href="/portal/sites/claimed-one/"' in html(customer_client.get("/sites/claimed-one/"))
    site.status = Site.Status.SUSPENDED
    site.save()
    assert 'href="/portal/sites/claimed-one/"' in html(customer_client.get("/sites/claimed-one/"))


def test_the_success_page_links_to_the_dashboard(client):
    from checkout.tests.factories import CheckoutSessionFactory

    session = CheckoutSessionFactory()
    body = html(client.get(f"/checkout/success/?session={session.pk}"))
    assert 'href="/portal/">Go to your dashboard' in body


def test_the_verify_page_and_the_portal_carry_no_inline_script_or_style(customer_client, customer):
    owned_site(customer, slug="csp")
    for path in ("/portal/", "/portal/sites/csp/", "/portal/account/"):
        body = html(customer_client.get(path))
        assert "<script>" not in body and "style=" not in body and "<style" not in body
    assert "<script>" not in html(Client().get("/portal/login/"))
