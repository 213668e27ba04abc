from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from customers.emails import password_reset_path
from customers.models import CustomerUser
from customers.ratelimits import PASSWORD_RESET_EMAIL_RATES, PASSWORD_RESET_IP_RATES
from customers.tests.conftest import PASSWORD, without_csrf
from customers.tests.factories import CustomerFactory
from webmagic.models import EmailLog
from webmagic.tasks import STUCK_EMAIL_AGE, resend_stuck_emails, send_email

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
    from customers.emails import set_password_path, verify_email_path

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
    log = EmailLog.objects.get()
    assert (log.status, log.error, log.user_id) == (EmailLog.Status.CANCELLED, "no active account uses this address", None)


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


# --- Same work whatever the address, and never dropped ------------------------------------------

# Inside the test's transaction: a savepoint, the email row's INSERT, the savepoint's release.
REQUEST_QUERIES = 3


def reset_emails():
    return EmailLog.objects.filter(kind=EmailLog.Kind.PASSWORD_RESET).order_by("pk")


def reset_messages():
    # Not all of mail.outbox: a broker failure also mails ADMINS Django's error report.
    return [m for m in mail.outbox if m.subject == "Reset your WebMagic password"]


def age_past_the_sweep(logs):
    EmailLog.objects.filter(pk__in=[log.pk for log in logs]).update(updated_at=timezone.now() - STUCK_EMAIL_AGE - timedelta(minutes=1))


def test_known_and_unknown_addresses_cost_the_request_the_same_work(
    client, customer, django_capture_on_commit_callbacks, django_assert_num_queries,
):
    """Timing must not tell who has an account: whatever the address, the request writes one email
    row of the same shape and publishes one send after commit, and never reads the accounts."""
    def request(email):
        with mock.patch("webmagic.tasks.send_email") as task:
            with django_assert_num_queries(REQUEST_QUERIES) as queries, django_capture_on_commit_callbacks(execute=True):
                assert client.post(RESET, {"email": email}).status_code == 200
        assert not any("customers_customeruser" in query["sql"] for query in queries.captured_queries)
        return [call.args for call in task.delay.call_args_list]

    known_sends, unknown_sends = request(" Maria@Example.com "), request("nobody@example.com")
    known, unknown = reset_emails()
    assert (known_sends, unknown_sends) == ([(known.pk,)], [(unknown.pk,)])  # tasks take ids: no address in the broker
    assert [(log.to_email, log.user_id, log.subject, log.dedupe_key, log.context, log.status) for log in (known, unknown)] == [
        ("maria@example.com", None, "Reset your WebMagic password", None, {}, EmailLog.Status.QUEUED),  # normalised
        ("nobody@example.com", None, "Reset your WebMagic password", None, {}, EmailLog.Status.QUEUED),
    ]
    assert mail.outbox == []


def test_the_known_address_gets_a_working_link_and_the_unknown_one_is_cancelled(client, customer, send_now):
    send_now(client, {"email": "maria@example.com"})
    send_now(client, {"email": "nobody@example.com"})
    known, unknown = reset_emails()
    assert (known.status, known.user_id) == (EmailLog.Status.SENT, customer.pk)  # the send recorded whose it was
    assert (unknown.status, unknown.user_id, unknown.error) == (
        EmailLog.Status.CANCELLED, None, "no active account uses this address",
    )
    assert [m.to for m in mail.outbox] == [["maria@example.com"]]

    form_url = open_link(client, reset_link_from(mail.outbox[0]))
    response = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and CustomerUser.objects.get(pk=customer.pk).check_password(NEW_PASSWORD)


def test_a_broker_down_at_commit_loses_no_request_the_sweep_sends_it_later(client, customer, send_now):
    with mock.patch("webmagic.tasks.send_email") as task:
        task.delay.side_effect = ConnectionError("broker down")
        for email in ("maria@example.com", "nobody@example.com"):
            response = send_now(client, {"email": email})
            assert response.status_code == 200 and b"Check your email" in response.content
    assert task.delay.call_count == 2
    assert reset_messages() == []
    known, unknown = reset_emails()
    assert known.status == unknown.status == EmailLog.Status.QUEUED

    assert resend_stuck_emails() == 0  # too fresh: a worker may still have it
    age_past_the_sweep([known, unknown])
    assert resend_stuck_emails() == 2
    known.refresh_from_db(), unknown.refresh_from_db()
    assert (known.status, unknown.status) == (EmailLog.Status.SENT, EmailLog.Status.CANCELLED)
    [sent] = reset_messages()
    assert sent.to == ["maria@example.com"] and open_link(client, reset_link_from(sent))

    age_past_the_sweep([known, unknown])
    assert resend_stuck_emails() == 0  # sent and cancelled emails are done


def test_an_account_closed_or_moved_before_the_send_gets_nothing(client, customer, django_capture_on_commit_callbacks):
    other = CustomerFactory(email="lucia@example.com")
    with django_capture_on_commit_callbacks(execute=False):
        client.post(RESET, {"email": "maria@example.com"})
        client.post(RESET, {"email": "lucia@example.com"})
    maria_email, lucia_email = reset_emails()
    CustomerUser.objects.filter(pk=customer.pk).update(is_active=False)
    CustomerUser.objects.filter(pk=other.pk).update(email="lucia@elsewhere.example")
    send_email(maria_email.pk)
    send_email(lucia_email.pk)
    assert mail.outbox == []
    assert set(reset_emails().values_list("status", flat=True)) == {EmailLog.Status.CANCELLED}


@pytest.mark.parametrize("change", [{"is_active": False}, {"email": "maria@elsewhere.example"}])
def test_a_reset_email_naming_its_account_is_cancelled_once_it_is_closed_or_moved(customer, change):
    """Rows may name their account (those queued before the form stopped looking accounts up)."""
    log = EmailLog.objects.create(kind=EmailLog.Kind.PASSWORD_RESET, to_email=customer.email, user=customer)
    CustomerUser.objects.filter(pk=customer.pk).update(**change)
    send_email(log.pk)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.CANCELLED and mail.outbox == []


def test_a_redelivered_send_task_sends_the_email_once(client, customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        client.post(RESET, {"email": "maria@example.com"})
        client.post(RESET, {"email": "nobody@example.com"})
    known, unknown = reset_emails()
    for _ in range(2):  # the broker delivered each message twice
        send_email(known.pk)
        send_email(unknown.pk)
    assert [m.to for m in mail.outbox] == [["maria@example.com"]]
    known.refresh_from_db(), unknown.refresh_from_db()
    assert (known.status, known.attempts, unknown.status, unknown.attempts) == (
        EmailLog.Status.SENT, 1, EmailLog.Status.CANCELLED, 1,
    )


def test_each_request_is_its_own_email(client, customer, send_now):
    send_now(client, {"email": "maria@example.com"}, REMOTE_ADDR="10.5.0.1")
    send_now(client, {"email": "maria@example.com"}, REMOTE_ADDR="10.5.0.2")
    assert reset_emails().count() == 2 and len(mail.outbox) == 2
    assert reset_link_from(mail.outbox[0]) and reset_link_from(mail.outbox[1])
