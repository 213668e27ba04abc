from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from customers.emails import verify_email_path
from customers.models import CustomerUser
from customers.ratelimits import VERIFY_RESEND_EMAIL_RATES, VERIFY_RESEND_IP_RATES
from customers.tests.factories import CustomerFactory
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db

RESEND = "/portal/verify-email/resend/"


@pytest.fixture
def unverified(db):
    return CustomerFactory(email="new@example.com", full_name="New Owner", email_verified=False)


@pytest.fixture
def unverified_client(client, unverified):
    client.force_login(unverified)
    return client


@pytest.mark.parametrize("path", ["/portal/", "/portal/account/", "/portal/sites/any/", "/portal/payments/pa_1/receipt/"])
def test_portal_pages_explain_how_to_verify_instead_of_showing_anything(unverified_client, path):
    response = unverified_client.get(path)
    body = response.content.decode()
    assert response.status_code == 403
    assert "Confirm your email address" in body and "new@example.com" in body
    assert 'action="/portal/verify-email/resend/"' in body and 'method="post"' in body


def test_resend_sends_a_24_hour_link_in_html_and_text(unverified_client, unverified, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = unverified_client.post(RESEND)
    assert response.status_code == 302 and response["Location"] == "/portal/"
    log = EmailLog.objects.get()
    assert (log.kind, log.user_id, log.to_email) == (EmailLog.Kind.VERIFY_EMAIL, unverified.pk, "new@example.com")
    message = mail.outbox[0]
    link = next(word for word in message.body.split() if "/portal/verify-email/" in word)
    assert link in message.alternatives[0][0] and "24 hours" in message.body
    assert link.split("/")[-2] not in str(log.context)
    follow = unverified_client.get("/portal/")
    assert "We sent a new confirmation link" in follow.content.decode()


def test_resend_needs_a_signed_in_account_and_a_post(client, unverified_client):
    assert Client().post(RESEND).status_code == 302
    assert unverified_client.get(RESEND).status_code == 405
    assert EmailLog.objects.count() == 0


def test_a_verified_account_is_not_sent_another_link(customer_client):
    customer_client.post(RESEND)
    assert EmailLog.objects.count() == 0


def test_get_only_shows_a_button_and_post_confirms(client, unverified):
    path = verify_email_path(user=unverified)
    page = client.get(path)
    assert page.status_code == 200 and "Confirm my email" in page.content.decode()
    assert page["Referrer-Policy"] == "same-origin"
    assert not CustomerUser.objects.get(pk=unverified.pk).email_verified  # link scanners confirm nothing

    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == "/portal/login/"
    user = CustomerUser.objects.get(pk=unverified.pk)
    assert user.email_verified and user.email_verified_at is not None
    assert "_auth_user_id" not in client.session  # confirming is not signing in


def test_a_signed_in_owner_confirming_goes_straight_to_the_dashboard(unverified_client, unverified):
    path = verify_email_path(user=unverified)
    response = unverified_client.post(path)
    assert response["Location"] == "/portal/"
    assert unverified_client.get("/portal/").status_code == 200


def test_the_link_is_single_use(client, unverified):
    path = verify_email_path(user=unverified)
    client.post(path)
    for method in (client.get, client.post):
        response = method(path)
        assert response.status_code == 200 and "This link no longer works" in response.content.decode()


def test_the_link_lasts_24_hours(unverified):
    start = timezone.now()
    with freeze_time(start):
        path = verify_email_path(user=unverified)
    with freeze_time(start + timedelta(hours=23, minutes=59)):
        assert "Confirm my email" in Client().get(path).content.decode()
    with freeze_time(start + timedelta(hours=24, minutes=1)):
        response = Client().post(path)
        assert "This link no longer works" in response.content.decode()
    assert not CustomerUser.objects.get(pk=unverified.pk).email_verified


def test_a_link_for_one_account_does_not_verify_another(client, unverified):
    other = CustomerFactory(email_verified=False)
    path = verify_email_path(user=unverified)
    other_uid = verify_email_path(user=other).split("/")[3]
    forged = path.replace(path.split("/")[3], other_uid)
    assert "This link no longer works" in client.post(forged).content.decode()
    assert not CustomerUser.objects.get(pk=other.pk).email_verified


def test_a_link_dies_when_the_address_changes(client, unverified):
    path = verify_email_path(user=unverified)
    CustomerUser.objects.filter(pk=unverified.pk).update(email="changed@example.com")
    assert "This link no longer works" in client.post(path).content.decode()


def test_resend_is_limited_per_account(frozen_clock, unverified):
    limit = int(VERIFY_RESEND_EMAIL_RATES[0].split("/")[0])
    devices = [Client() for _ in range(limit + 1)]
    for n, device in enumerate(devices):
        device.force_login(unverified)
        response = device.post(RESEND, REMOTE_ADDR=f"10.5.0.{n}")
        assert response.status_code == (302 if n < limit else 429)
    assert "Too many tries" in response.content.decode()
    assert EmailLog.objects.count() == limit
    someone_else = Client()
    someone_else.force_login(CustomerFactory(email_verified=False))
    assert someone_else.post(RESEND, REMOTE_ADDR="10.5.0.1").status_code == 302


def test_resend_is_limited_per_ip(frozen_clock):
    limit = int(VERIFY_RESEND_IP_RATES[0].split("/")[0])
    for n in range(limit + 1):
        device = Client()
        device.force_login(CustomerFactory(email_verified=False))
        response = device.post(RESEND, REMOTE_ADDR="10.6.0.1")
        assert response.status_code == (302 if n < limit else 429)
    other_ip = Client()
    other_ip.force_login(CustomerFactory(email_verified=False))
    assert other_ip.post(RESEND, REMOTE_ADDR="10.6.0.2").status_code == 302


def _browser_origin(page) -> str:
    # What a browser sends as Origin on a same-origin form POST, given the page's Referrer-Policy
    # (Fetch standard: "no-referrer" serialises the origin as "null").
    return "null" if page["Referrer-Policy"] == "no-referrer" else "http://testserver"


def test_the_token_pages_forms_pass_csrf_as_a_browser_posts_them(unverified):
    from customers.emails import password_reset_path

    browser = Client(enforce_csrf_checks=True)
    path = verify_email_path(user=unverified)
    page = browser.get(path)
    token = page.context["csrf_token"]
    response = browser.post(path, {"csrfmiddlewaretoken": str(token)}, HTTP_ORIGIN=_browser_origin(page))
    assert response.status_code == 302
    assert CustomerUser.objects.get(pk=unverified.pk).email_verified

    form_url = browser.get(password_reset_path(user=unverified))["Location"]
    page = browser.get(form_url)
    new = "a-brand-new-password-7"
    response = browser.post(
        form_url, {"csrfmiddlewaretoken": str(page.context["csrf_token"]), "new_password1": new, "new_password2": new},
        HTTP_ORIGIN=_browser_origin(page),
    )
    assert response.status_code == 302 and CustomerUser.objects.get(pk=unverified.pk).check_password(new)


def test_staff_can_send_a_confirmation_link_from_admin(staff_client, unverified, customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/customers/customeruser/",
            {"action": "send_verification_email", "_selected_action": [unverified.pk, customer.pk]}, follow=True,
        )
    assert response.status_code == 200
    assert [m.to for m in mail.outbox] == [["new@example.com"]]  # the verified customer is skipped
    assert "/portal/verify-email/" in mail.outbox[0].body
