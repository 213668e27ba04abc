""""Set your password now" on the success page (issue 16, part 2): only the browser that started
the checkout, only once the payment is confirmed, only while the account it created has no
password; the welcome email's link keeps working until then and says "used" afterwards."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from checkout.ledger import PaymentConfirmation
from checkout.models import CheckoutSession
from checkout.services import success_password
from checkout.services.confirmations import payment_confirmed_record
from checkout.tests.factories import CheckoutSessionFactory
from customers import services as customer_services
from customers.models import CustomerUser
from sites.models import Site
from sites.tests.factories import SiteFactory

pytestmark = pytest.mark.django_db

EMAIL = "maria.lopez@example.com"
GOOD_PASSWORD = "a-long and memorable passphrase 42"
FORM_HEADING = "Choose your password"


@pytest.fixture
def session(preview_site):
    return CheckoutSessionFactory(site=preview_site, customer_email=EMAIL, customer_name="María López")


def confirm(session, payment_id="pa_success_pw") -> CustomerUser:
    """The payment arrives (the real fulfilment path): the session is completed and the account
    is created without a usable password, as the webhook does it."""
    with_commit = payment_confirmed_record(confirmation=PaymentConfirmation(
        payment_id=payment_id, amount_cents=int(session.amount * 100), currency="USD", checkout_id=session.recurrente_checkout_id,
    ))
    assert with_commit == "fulfilled"
    session.refresh_from_db()
    return session.user


def bind(client, session):
    browser_session = client.session
    success_password.checkout_bind_to_browser(browser_session=browser_session, checkout_session=session)
    browser_session.save()


def page(client, session):
    return client.get(f"/checkout/success/?session={session.pk}")


def set_password(client, session, password=GOOD_PASSWORD, repeat=None, **extra):
    return client.post(
        f"/checkout/success/password/?session={session.pk}",
        {"new_password1": password, "new_password2": password if repeat is None else repeat}, **extra,
    )


# --- Binding: the purchase form and the recovery link ------------------------------------------

def test_the_purchase_form_binds_the_checkout_to_the_browser_that_posted_it(client, preview_site, checkout_created):
    response = client.post(f"/sites/{preview_site.slug}/purchase/", {"full_name": "María López", "email": EMAIL})
    assert response.status_code == 303
    started = CheckoutSession.objects.get()
    assert client.session[success_password.BOUND_CHECKOUTS_SESSION_KEY] == [str(started.pk)]
    assert not Client().session.get(success_password.BOUND_CHECKOUTS_SESSION_KEY)


def test_reusing_an_open_checkout_binds_it_once(client, preview_site, checkout_created):
    for _ in range(2):
        client.post(f"/sites/{preview_site.slug}/purchase/", {"full_name": "María López", "email": EMAIL})
    [reused] = CheckoutSession.objects.all()
    assert client.session[success_password.BOUND_CHECKOUTS_SESSION_KEY] == [str(reused.pk)]


def test_the_recovery_link_binds_its_discounted_checkout(client, preview_site, checkout_created):
    from checkout.tests.test_recovery_link import recover_url, reminded_session

    original = reminded_session(preview_site, email=EMAIL)
    assert client.get(recover_url(original)).status_code == 303
    discounted = CheckoutSession.objects.get(recovered_from=original)
    assert client.session[success_password.BOUND_CHECKOUTS_SESSION_KEY] == [str(discounted.pk)]


def test_a_browser_keeps_only_its_latest_few_checkouts(client, preview_site):
    sessions = [CheckoutSessionFactory(site=preview_site) for _ in range(success_password.BOUND_CHECKOUTS_KEPT + 2)]
    for checkout_session in sessions:
        bind(client, checkout_session)
    kept = client.session[success_password.BOUND_CHECKOUTS_SESSION_KEY]
    assert kept == [str(s.pk) for s in sessions[-success_password.BOUND_CHECKOUTS_KEPT:]]


# --- Who is offered the form -----------------------------------------------------------------

def test_the_paying_browser_is_offered_the_form_once_confirmed(client, session):
    bind(client, session)
    before = page(client, session).content.decode()
    assert FORM_HEADING not in before and "Confirming your payment" in before  # not before it is paid
    confirm(session)
    body = page(client, session).content.decode()
    assert FORM_HEADING in body and 'name="new_password1"' in body and 'name="csrfmiddlewaretoken"' in body
    assert "Go to your dashboard" not in body
    assert 'autocomplete="new-password"' in body and "autofocus" not in body  # the news keeps the focus


def test_a_browser_with_only_the_link_sees_todays_page(client, session):
    confirm(session)
    body = page(client, session).content.decode()
    assert "LA Plumbing Pros is yours!" in body and "Go to your dashboard" in body
    assert FORM_HEADING not in body and "new_password1" not in body


def test_a_browser_bound_to_another_checkout_is_not_offered_this_one(client, session, preview_site):
    bind(client, CheckoutSessionFactory(site=preview_site))
    confirm(session)
    assert FORM_HEADING not in page(client, session).content.decode()


def test_an_account_that_already_has_a_password_is_not_offered(client, session):
    bind(client, session)
    user = confirm(session)
    user.set_password("chosen-elsewhere already 1")
    user.save()
    body = page(client, session).content.decode()
    assert FORM_HEADING not in body and "Go to your dashboard" in body


def test_an_older_password_less_account_is_not_opened_by_a_new_purchase(client, session):
    """Paying with someone's address must not open their earlier, never-claimed purchases."""
    older = CustomerUser.objects.create_user(EMAIL)  # a webhook-made account: no password
    CustomerUser.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(days=30))
    SiteFactory(slug="older-site", status=Site.Status.OWNED, owner=older, purchased_at=timezone.now() - timedelta(days=30))
    bind(client, session)
    assert confirm(session).pk == older.pk  # the second purchase joined the existing account
    assert FORM_HEADING not in page(client, session).content.decode()
    assert set_password(client, session).status_code == 303
    older.refresh_from_db()
    assert not older.has_usable_password()


# --- Setting it ---------------------------------------------------------------------------

def test_setting_the_password_signs_in_on_the_portal_with_a_new_session(client, session):
    bind(client, session)
    user = confirm(session)
    session_key_before = client.session.session_key
    response = set_password(client, session)
    assert response.status_code == 302 and response["Location"] == "/portal/"
    user.refresh_from_db()
    assert user.check_password(GOOD_PASSWORD) and user.email_verified
    assert client.session.session_key != session_key_before  # login() rotated the session
    assert int(client.session["_auth_user_id"]) == user.pk
    dashboard = client.get("/portal/")
    assert dashboard.status_code == 200 and "LA Plumbing Pros" in dashboard.content.decode()
    assert "Your password is saved" in dashboard.content.decode()


def test_it_works_only_once(client, session):
    bind(client, session)
    user = confirm(session)
    set_password(client, session)
    client.post("/portal/logout/")
    again = set_password(client, session, password="another passphrase entirely 7")
    assert again.status_code == 303 and again["Location"] == f"/checkout/success/?session={session.pk}"
    user.refresh_from_db()
    assert user.check_password(GOOD_PASSWORD)
    assert FORM_HEADING not in page(client, session).content.decode()


@pytest.mark.parametrize(("password", "repeat", "message"), [
    ("12345678901", None, "entirely numeric"),
    ("password123", None, "too common"),
    ("short1", None, "too short"),
    (GOOD_PASSWORD, GOOD_PASSWORD + "x", "didn’t match"),
])
def test_weak_or_mismatched_passwords_are_shown_on_the_success_page(client, session, password, repeat, message):
    bind(client, session)
    user = confirm(session)
    response = set_password(client, session, password=password, repeat=repeat)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body and FORM_HEADING in body and "is yours!" in body
    assert password not in body  # never echoed back
    user.refresh_from_db()
    assert not user.has_usable_password()


@pytest.mark.parametrize("setup", ["unbound", "unpaid", "unknown"])
def test_a_post_that_may_not_set_it_changes_nothing(client, session, setup):
    if setup != "unbound":
        bind(client, session)
    user = confirm(session) if setup != "unpaid" else None
    if setup == "unknown":
        response = client.post("/checkout/success/password/?session=3f2b8c1e-0000-4000-8000-000000000000",
                               {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD})
        assert response.status_code == 404
    else:
        response = set_password(client, session)
        assert response.status_code == 303 and response["Location"] == f"/checkout/success/?session={session.pk}"
    assert "_auth_user_id" not in client.session
    if user:
        user.refresh_from_db()
        assert not user.has_usable_password()


def test_the_form_needs_csrf_and_post(session):
    browser = Client(enforce_csrf_checks=True)
    bind(browser, session)
    user = confirm(session)
    assert set_password(browser, session).status_code == 403
    assert browser.get(f"/checkout/success/password/?session={session.pk}").status_code == 405
    user.refresh_from_db()
    assert not user.has_usable_password()


def test_the_password_never_reaches_error_reports(session):
    client = Client()
    bind(client, session)
    confirm(session)
    response = set_password(client, session, password="12345678901")
    assert response.wsgi_request.sensitive_post_parameters == ("new_password1", "new_password2")
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]


def test_it_is_rate_limited(client, session):
    bind(client, session)
    confirm(session)
    answers = [set_password(client, session, password="12345678901").status_code for _ in range(11)]
    assert answers[:10] == [400] * 10 and answers[10] == 429


# --- The welcome email's link ------------------------------------------------------------------

def welcome_link(user) -> str:
    [welcome] = [m for m in mail.outbox if m.to == [user.email] and "/portal/set-password/" in m.body]
    return re.search(r"https?://\S+(/portal/set-password/\S+/)", welcome.body).group(1)


def test_the_emailed_link_works_until_then_and_says_used_afterwards(client, session, django_capture_on_commit_callbacks):
    bind(client, session)
    with django_capture_on_commit_callbacks(execute=True):
        user = confirm(session)
    link = welcome_link(user)
    assert Client().get(link).status_code == 302  # still good: it moves the token into the session

    set_password(client, session)
    used = Client().get(link)
    assert used.status_code == 200 and "This link no longer works" in used.content.decode()
    assert "has been used already" in used.content.decode()


def test_after_the_emailed_link_set_it_the_success_page_no_longer_offers_the_form(client, session, django_capture_on_commit_callbacks):
    bind(client, session)
    with django_capture_on_commit_callbacks(execute=True):
        user = confirm(session)
    other_browser = Client()
    other_browser.get(welcome_link(user))
    chosen = other_browser.post(re.sub(r"/[^/]+/$", "/choose/", welcome_link(user)),
                                {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD})
    assert chosen.status_code == 302
    assert FORM_HEADING not in page(client, session).content.decode()


def test_the_service_refuses_a_second_password(session):
    user = confirm(session)
    customer_services.customer_password_set_after_purchase(user=user, password=GOOD_PASSWORD)
    with pytest.raises(customer_services.PasswordAlreadySet):
        customer_services.customer_password_set_after_purchase(user=user, password="another passphrase entirely 7")
    user.refresh_from_db()
    assert user.check_password(GOOD_PASSWORD)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_submissions_at_once_set_one_password(session):
    """A double tap, or the emailed link used at the same moment: the row lock lets one win."""
    from webmagic.tests.concurrency import run_together

    user = confirm(session)

    def attempt(password):
        def job():
            try:
                customer_services.customer_password_set_after_purchase(user=user, password=password)
                return password
            except customer_services.PasswordAlreadySet:
                return None
        return job

    results = run_together([attempt(GOOD_PASSWORD), attempt("another passphrase entirely 7")])
    [winner] = [r for r in results if r]
    user.refresh_from_db()
    assert user.check_password(winner)


# --- The discount on a recovery checkout's success page ----------------------------------------

def test_a_discounted_checkout_shows_the_discount_applied(client, preview_site):
    from decimal import Decimal

    original = CheckoutSessionFactory(site=preview_site, customer_email=EMAIL, status=CheckoutSession.Status.ABANDONED)
    discounted = CheckoutSessionFactory(
        site=preview_site, customer_email=EMAIL, amount=Decimal("445.50"), discount_percent=10, recovered_from=original,
    )
    confirm(discounted, payment_id="pa_discounted")
    body = page(client, discounted).content.decode()
    assert "10% off applied — you paid $445.50 instead of $495." in body


def test_a_full_price_checkout_shows_no_discount(client, session):
    confirm(session)
    assert "off applied" not in page(client, session).content.decode()


# --- Slow confirmation --------------------------------------------------------------------------

def test_the_slow_notice_is_on_the_confirming_page_hidden_until_the_script_shows_it(client, session, settings):
    body = page(client, session).content.decode()
    notice = re.search(r'<div[^>]*id="payment-slow"[^>]*>(.*?)</div>', body, re.S)
    assert notice and " hidden" in notice.group(0)
    text = notice.group(1)
    assert "taking longer than usual" in text and "close this page" in text and "m•••@example.com" in text
    assert "mailto:" in text
    confirm(session)
    assert 'id="payment-slow"' not in page(client, session).content.decode()
