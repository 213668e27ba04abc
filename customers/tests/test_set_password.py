from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from freezegun import freeze_time

from customers.emails import set_password_path
from customers.models import CustomerUser
from customers.tests.factories import CustomerFactory
from customers.tokens import set_password_token_generator
from webmagic.emails import email_render
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "plumbing-rocks-2026!"


@pytest.fixture
def new_customer():
    """An account as the payment webhook creates it: no usable password, email not verified."""
    return CustomerUser.objects.create_user("maria.lopez@example.com", full_name="María López")


def open_link(client, user):
    """Follow the emailed link: the token moves into the session and the page drops it from its URL."""
    response = client.get(set_password_path(user=user))
    assert response.status_code == 302
    assert response["Location"].endswith("/choose/")
    return response["Location"]


def test_the_link_works_for_an_account_that_never_had_a_password(client, new_customer):
    form_url = open_link(client, new_customer)
    page = client.get(form_url)
    assert page.status_code == 200
    assert "Choose your password" in page.content.decode() and "maria.lopez@example.com" in page.content.decode()
    assert page["Referrer-Policy"] == "same-origin"
    assert "no-cache" in page["Cache-Control"] or "max-age=0" in page["Cache-Control"]


def test_setting_the_password_verifies_the_email_and_logs_in_with_a_new_session(client, new_customer):
    form_url = open_link(client, new_customer)
    session_before = client.session.session_key
    response = client.post(form_url, {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/portal/"

    user = CustomerUser.objects.get(pk=new_customer.pk)
    assert user.check_password(GOOD_PASSWORD)
    assert user.email_verified and user.email_verified_at is not None
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session.session_key != session_before


def test_the_link_is_single_use(client, new_customer):
    path = set_password_path(user=new_customer)
    form_url = open_link(client, new_customer)
    client.post(form_url, {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD})

    other = client.__class__()
    again = other.get(path)
    assert again.status_code == 200
    assert "This link no longer works" in again.content.decode()
    assert "/portal/password-reset/" in again.content.decode()


def test_the_link_lasts_72_hours_not_one(client, new_customer):
    start = timezone.now()
    with freeze_time(start):
        path = set_password_path(user=new_customer)
    with freeze_time(start + timedelta(hours=71)):
        assert client.get(path).status_code == 302
    with freeze_time(start + timedelta(hours=73)):
        response = client.__class__().get(path)
        assert "This link no longer works" in response.content.decode()


@pytest.mark.parametrize("mangle", [
    lambda p: p.replace("/set-password/", "/set-password/x"),
    lambda p: p[:-3] + "0/",
    lambda p: p.rsplit("/", 2)[0] + "/choose/",
])
def test_a_tampered_or_forged_link_is_refused(client, new_customer, mangle):
    response = client.get(mangle(set_password_path(user=new_customer)))
    assert response.status_code == 200
    assert "This link no longer works" in response.content.decode()


def test_a_password_reset_token_is_not_a_set_password_token(client, new_customer):
    from django.contrib.auth.tokens import default_token_generator

    reset_token = default_token_generator.make_token(new_customer)
    assert not set_password_token_generator.check_token(new_customer, reset_token)


def test_weak_or_mismatched_passwords_are_refused_with_the_form_kept(client, new_customer):
    form_url = open_link(client, new_customer)
    weak = client.post(form_url, {"new_password1": "12345678901", "new_password2": "12345678901"})
    assert weak.status_code == 200 and "entirely numeric" in weak.content.decode()
    mismatch = client.post(form_url, {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD + "x"})
    assert mismatch.status_code == 200 and "match" in mismatch.content.decode()
    assert not CustomerUser.objects.get(pk=new_customer.pk).has_usable_password()


def test_an_inactive_account_cannot_use_its_link(client, new_customer):
    path = set_password_path(user=new_customer)
    CustomerUser.objects.filter(pk=new_customer.pk).update(is_active=False)
    assert "This link no longer works" in client.get(path).content.decode()


def test_the_welcome_email_carries_a_fresh_link_built_at_send_time(new_customer, client):
    log = EmailLog.objects.create(
        kind=EmailLog.Kind.WELCOME, to_email=new_customer.email, subject="Welcome", user=new_customer,
        context={"site_name": "Tom & <Jerry>", "site_url": "http://testserver/sites/x/"},
    )
    message = email_render(log)
    html = message.alternatives[0][0]
    assert "Tom &amp; &lt;Jerry&gt;" in html
    link = next(word for word in message.body.split() if "/portal/set-password/" in word)
    assert link.startswith("http://testserver/portal/set-password/")
    assert client.get(link.removeprefix("http://testserver")).status_code == 302
    assert "set-password" not in str(log.context)


def test_a_customer_who_already_chose_a_password_gets_a_sign_in_button_instead(db):
    user = CustomerFactory()
    log = EmailLog.objects.create(kind=EmailLog.Kind.WELCOME, to_email=user.email, subject="Welcome", user=user)
    message = email_render(log)
    assert "/portal/set-password/" not in message.body
    assert "http://testserver/portal/login/" in message.body


def test_admin_can_resend_the_set_password_email(staff_client, new_customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/customers/customeruser/",
            {"action": "resend_set_password_email", "_selected_action": [new_customer.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert [m.to for m in mail.outbox] == [["maria.lopez@example.com"]]
    assert mail.outbox[0].subject == "Set your WebMagic password"
    assert "/portal/set-password/" in mail.outbox[0].body
