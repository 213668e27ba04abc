import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from customers.models import CustomerUser
from customers.ratelimits import PASSWORD_RESET_EMAIL_RATES, PASSWORD_RESET_IP_RATES
from customers.services import password_reset_path
from customers.tasks import password_reset_emails_send
from customers.tests.conftest import PASSWORD, without_csrf
from customers.tests.factories import CustomerFactory
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db

RESET = "/portal/password-reset/"
NEW_PASSWORD = "a-brand-new-password-7"


@pytest.fixture
def send_now(django_capture_on_commit_callbacks):
    """Run the after-commit email task (eager Celery) like a worker would."""
    def post(client, data, **extra):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(RESET, data, **extra)
    return post


def reset_link_from(message) -> str:
    link = next(word for word in message.body.split() if "/portal/password-reset/" in word and word.count("/") > 5)
    return link.removeprefix("http://testserver")


def open_link(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].endswith("/choose/")
    return response["Location"]


def test_the_answer_is_identical_whether_or_not_the_email_has_an_account(client, customer, send_now):
    known = send_now(client, {"email": "maria@example.com"})
    unknown = send_now(client, {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert without_csrf(known.content) == without_csrf(unknown.content)
    assert dict(known.headers).keys() == dict(unknown.headers).keys()
    assert b"Check your email" in known.content
    # Only the real account got an email.
    assert [m.to for m in mail.outbox] == [["maria@example.com"]]


def test_the_email_goes_through_the_email_layer_in_html_and_text_with_no_token_stored(client, customer, send_now):
    send_now(client, {"email": "  MARIA@Example.com "})
    log = EmailLog.objects.get()
    assert (log.kind, log.to_email, log.user_id, log.status) == (EmailLog.Kind.PASSWORD_RESET, "maria@example.com", customer.pk, "sent")
    message = mail.outbox[0]
    html = message.alternatives[0][0]
    link = reset_link_from(message)
    assert f"http://testserver{link}" in html and "one hour" in message.body
    assert link.split("/")[-2] not in str(log.context)  # the token is never written down
    assert "Hi María" in message.body and "Hi María" in html


def test_a_customer_name_is_escaped_in_the_html_email(client, send_now):
    CustomerFactory(email="x@example.com", full_name="<b>Bob</b> & Co")
    send_now(client, {"email": "x@example.com"})
    html = mail.outbox[0].alternatives[0][0]
    assert "&lt;b&gt;Bob&lt;/b&gt;" in html and "<b>Bob" not in html


def test_the_link_sets_a_password_for_an_account_that_never_had_one(client, send_now):
    user = CustomerUser.objects.create_user("fresh@example.com", full_name="Fresh Buyer")
    send_now(client, {"email": "fresh@example.com"})
    assert "choose a password" in mail.outbox[0].body
    form_url = open_link(client, reset_link_from(mail.outbox[0]))
    page = client.get(form_url)
    assert page.status_code == 200 and "fresh@example.com" in page.content.decode()
    assert page["Referrer-Policy"] == "same-origin"

    response = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/portal/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert user.email_verified  # the link reached the inbox
    assert user.login_count == 1 and client.session["_auth_user_id"] == str(user.pk)


def test_the_link_is_single_use(client, customer):
    path = password_reset_path(user=customer)
    form_url = open_link(client, path)
    client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    again = Client().get(path)
    assert again.status_code == 200 and "This link no longer works" in again.content.decode()
    # Replaying the form step with the spent token kept in a session fails as well.
    replay = client.post(form_url, {"new_password1": "yet-another-pass-88", "new_password2": "yet-another-pass-88"})
    assert "This link no longer works" in replay.content.decode()
    assert CustomerUser.objects.get(pk=customer.pk).check_password(NEW_PASSWORD)


def test_the_link_lasts_one_hour(client, customer):
    start = timezone.now()
    with freeze_time(start):
        path = password_reset_path(user=customer)
    with freeze_time(start + timedelta(minutes=59)):
        assert Client().get(path).status_code == 302
    with freeze_time(start + timedelta(minutes=61)):
        response = Client().get(path)
        assert response.status_code == 200 and "This link no longer works" in response.content.decode()


def test_a_tampered_link_or_another_kind_of_token_is_refused(client, customer):
    from customers.services import set_password_path, verify_email_path

    path = password_reset_path(user=customer)
    other = CustomerFactory()
    forged_uid = path.replace(path.split("/")[3], password_reset_path(user=other).split("/")[3])
    for bad in [path[:-3] + "0/", forged_uid,
                set_password_path(user=customer).replace("set-password", "password-reset"),
                verify_email_path(user=customer).replace("verify-email", "password-reset")]:
        assert "This link no longer works" in Client().get(bad).content.decode()


def test_changing_the_password_by_reset_ends_other_sessions(client, customer):
    elsewhere = Client()
    elsewhere.force_login(customer)
    assert elsewhere.get("/portal/").status_code == 200
    form_url = open_link(client, password_reset_path(user=customer))
    client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert elsewhere.get("/portal/").status_code == 302  # signed out
    assert client.get("/portal/").status_code == 200


def test_weak_passwords_are_refused(client, customer):
    form_url = open_link(client, password_reset_path(user=customer))
    response = client.post(form_url, {"new_password1": "1234567890123", "new_password2": "1234567890123"})
    assert response.status_code == 200 and "entirely numeric" in response.content.decode()
    assert CustomerUser.objects.get(pk=customer.pk).check_password(PASSWORD)


def test_inactive_accounts_get_no_email_but_the_same_page(client, send_now):
    CustomerFactory(email="gone@example.com", is_active=False)
    response = send_now(client, {"email": "gone@example.com"})
    assert response.status_code == 200 and b"Check your email" in response.content
    assert mail.outbox == []


def test_a_malformed_address_re_renders_the_form(client):
    response = client.post(RESET, {"email": "not-an-email"})
    assert response.status_code == 400 and "valid email" in response.content.decode()
    assert EmailLog.objects.count() == 0


def _count(rates, unit):
    return int(next(rate for rate in rates if rate.endswith(unit)).split("/")[0])


def test_reset_requests_are_limited_per_email(client, customer, frozen_clock, send_now):
    limit = _count(PASSWORD_RESET_EMAIL_RATES, "/15m")
    for n in range(limit):
        assert send_now(client, {"email": "maria@example.com"}, REMOTE_ADDR=f"10.3.0.{n}").status_code == 200
    blocked = send_now(client, {"email": "Maria@example.com"}, REMOTE_ADDR="10.3.1.1")
    assert blocked.status_code == 429 and "Too many tries" in blocked.content.decode()
    assert send_now(client, {"email": "other@example.com"}, REMOTE_ADDR="10.3.1.1").status_code == 200
    assert EmailLog.objects.filter(to_email="maria@example.com").count() == limit


def test_reset_requests_are_limited_per_ip(client, frozen_clock):
    limit = _count(PASSWORD_RESET_IP_RATES, "/m")
    for n in range(limit):
        assert client.post(RESET, {"email": f"a{n}@example.com"}, REMOTE_ADDR="10.4.0.1").status_code == 200
    assert client.post(RESET, {"email": "b@example.com"}, REMOTE_ADDR="10.4.0.1").status_code == 429
    assert client.post(RESET, {"email": "b@example.com"}, REMOTE_ADDR="10.4.0.2").status_code == 200


# --- Same work whatever the address -------------------------------------------------------------

def test_known_and_unknown_addresses_cost_the_request_the_same_work(
    client, customer, django_capture_on_commit_callbacks, django_assert_num_queries, monkeypatch,
):
    """Timing must not tell who has an account: the request runs the same queries (none at all)
    and enqueues one task of one shape, whatever the address; the task does the looking up."""
    enqueued = []
    monkeypatch.setattr(password_reset_emails_send, "delay", lambda *args, **kwargs: enqueued.append((args, kwargs)))

    def request(email):
        with django_assert_num_queries(0), django_capture_on_commit_callbacks(execute=True) as callbacks:
            assert client.post(RESET, {"email": email}).status_code == 200
        return len(callbacks)

    assert request(" Maria@Example.com ") == request("nobody@example.com") == 1

    [(known_args, known_kwargs), (unknown_args, unknown_kwargs)] = enqueued
    assert known_kwargs == unknown_kwargs == {}
    assert (known_args[0], unknown_args[0]) == ("maria@example.com", "nobody@example.com")  # normalised
    assert re.fullmatch(r"[0-9a-f]{32}", known_args[1]) and re.fullmatch(r"[0-9a-f]{32}", unknown_args[1])
    assert known_args[1] != unknown_args[1]
    assert EmailLog.objects.count() == 0 and mail.outbox == []


def test_the_task_emails_the_known_address_and_nothing_for_an_unknown_one(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert password_reset_emails_send.delay("maria@example.com", "a" * 32).get() == 1
        assert password_reset_emails_send.delay("nobody@example.com", "b" * 32).get() == 0
    assert [m.to for m in mail.outbox] == [["maria@example.com"]]
    assert "/portal/password-reset/" in reset_link_from(mail.outbox[0])


def test_a_redelivered_task_sends_the_email_once(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert password_reset_emails_send("maria@example.com", "c" * 32) == 1
        assert password_reset_emails_send("maria@example.com", "c" * 32) == 0  # the broker delivered it again
    assert EmailLog.objects.filter(kind=EmailLog.Kind.PASSWORD_RESET).count() == 1 and len(mail.outbox) == 1
    # A new request is a new email.
    with django_capture_on_commit_callbacks(execute=True):
        assert password_reset_emails_send("maria@example.com", "d" * 32) == 1
    assert len(mail.outbox) == 2


def test_a_broker_that_is_down_still_gets_the_same_page(client, customer, django_capture_on_commit_callbacks, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(password_reset_emails_send, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(RESET, {"email": "maria@example.com"})
    assert response.status_code == 200 and b"Check your email" in response.content
