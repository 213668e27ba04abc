"""A claimed email ends sent, or failed and alerted; never `sending` for good, never twice.

The provider is Brevo faked at its HTTP boundary (fake_brevo): it dedupes on the idempotency key
as the real one does, so "delivered once" below is what a recipient would see."""

from datetime import timedelta
from email.header import decode_header, make_header
from unittest import mock

import pytest
import responses
from django.core import mail
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from webmagic import emails
from webmagic.alerts import alert_transactional_emails_failing
from webmagic.emails import email_claim_for_sending, email_queue
from webmagic.models import EmailLog
from webmagic.tasks import resend_stuck_emails, send_email

from .concurrency import run_together
from .fake_brevo import BREVO_SETTINGS, fake_brevo_start

pytestmark = pytest.mark.django_db

BUYER = "maria.lopez@example.com"


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler code catches it."""


@pytest.fixture
def brevo():
    with override_settings(**BREVO_SETTINGS), responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield fake_brevo_start(mocked)


def queue_receipt(site_name="Café Antigua"):
    return email_queue(kind=EmailLog.Kind.RECEIPT, to_email=BUYER, context={"site_name": site_name, "amount": "$495"})


def queued(django_capture_on_commit_callbacks, **kwargs):
    with django_capture_on_commit_callbacks(execute=False):
        return queue_receipt(**kwargs)


def die_after_the_provider_answered(real_send):
    """The provider took the email, then the worker died before recording it."""

    def send(self, *args, **kwargs):
        real_send(self, *args, **kwargs)
        raise WorkerKilled

    return send


@pytest.mark.postgres  # immediate takeover needs row locks; SQLite waits UNLOCKED_TAKEOVER_AFTER (test below)
def test_a_worker_dying_after_the_provider_took_the_email_is_taken_over_and_delivered_once(
    brevo, django_capture_on_commit_callbacks
):
    log = queued(django_capture_on_commit_callbacks)
    real_send = mail.EmailMultiAlternatives.send
    with mock.patch.object(mail.EmailMultiAlternatives, "send", die_after_the_provider_answered(real_send)):
        with pytest.raises(WorkerKilled):
            send_email.delay(log.pk)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENDING and log.attempts == 1  # the attempt counted, outcome unknown
    assert len(brevo.delivered_to(BUYER)) == 1

    send_email.delay(log.pk)  # the broker redelivers the task of the dead worker

    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and log.attempts == 2 and log.provider_message_id
    assert len(brevo.requests) == 2 and len(brevo.delivered_to(BUYER)) == 1
    keys = {request["headers"]["idempotencyKey"] for request in brevo.requests}
    assert keys == {emails.email_idempotency_key(log)}


def test_a_worker_dying_before_the_provider_answered_is_sent_by_the_sweep(brevo, django_capture_on_commit_callbacks):
    log = queued(django_capture_on_commit_callbacks)
    with mock.patch.object(mail.EmailMultiAlternatives, "send", side_effect=WorkerKilled):
        with pytest.raises(WorkerKilled):
            send_email.delay(log.pk)
    assert brevo.requests == []
    assert resend_stuck_emails() == 0  # a minute's grace for the claim's own moment
    EmailLog.objects.filter(pk=log.pk).update(updated_at=timezone.now() - timedelta(minutes=2))
    assert resend_stuck_emails() == 1
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and len(brevo.delivered_to(BUYER)) == 1


def test_each_email_has_its_own_idempotency_key_on_every_attempt(brevo, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first, second = queue_receipt(), queue_receipt()
    assert len(brevo.delivered_to(BUYER)) == 2  # two emails are two emails
    keys = [request["headers"]["idempotencyKey"] for request in brevo.requests]
    assert keys == [emails.email_idempotency_key(first), emails.email_idempotency_key(second)] and keys[0] != keys[1]


def test_a_provider_error_is_retried_under_the_same_key(brevo, django_capture_on_commit_callbacks):
    brevo.fail_next = 1
    log = queued(django_capture_on_commit_callbacks)
    with mock.patch.object(send_email, "retry", side_effect=lambda exc, countdown: exc):
        with pytest.raises(Exception):
            send_email.apply(args=[log.pk], throw=True)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.QUEUED and log.attempts == 1 and "503" in log.error
    send_email.apply(args=[log.pk], retries=1)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and log.attempts == 2
    assert len({r["headers"]["idempotencyKey"] for r in brevo.requests}) == 1 and len(brevo.delivered) == 1


def test_an_error_while_rendering_is_retried_then_failed_and_alerted(django_capture_on_commit_callbacks):
    log = queued(django_capture_on_commit_callbacks)
    countdowns = []
    with mock.patch.object(emails, "render_to_string", side_effect=KeyError("business_name")):
        with mock.patch.object(send_email, "retry", side_effect=lambda exc, countdown: countdowns.append(countdown) or exc):
            with pytest.raises(KeyError):
                send_email.apply(args=[log.pk], throw=True)
        log.refresh_from_db()
        # Not left `sending`: back in the queue with the error, retried on the usual schedule
        # (nothing reached the provider, so no outcome is unknown).
        assert log.status == EmailLog.Status.QUEUED and "KeyError" in log.error and log.attempts == 1
        assert countdowns == [30] and log.outcome_unknown_since is None
        send_email.apply(args=[log.pk], retries=send_email.max_retries)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.FAILED and "KeyError" in log.error and log.attempts == 2
    alert = alert_transactional_emails_failing(now=timezone.now())
    assert alert is not None and f"email {log.pk} (receipt, failed" in alert.body
    assert mail.outbox == []


def test_a_sending_attempt_older_than_the_providers_memory_is_failed_for_staff_not_resent(
    brevo, django_capture_on_commit_callbacks
):
    log = queued(django_capture_on_commit_callbacks)
    EmailLog.objects.filter(pk=log.pk).update(
        status=EmailLog.Status.SENDING, attempts=1, updated_at=timezone.now() - emails.RESEND_WINDOW - timedelta(seconds=1)
    )
    assert resend_stuck_emails() == 1
    log.refresh_from_db()
    assert log.status == EmailLog.Status.FAILED and log.error.startswith("Outcome unknown")
    assert brevo.requests == []
    alert = alert_transactional_emails_failing(now=timezone.now())
    assert alert is not None and "Outcome unknown" in alert.body


@pytest.mark.postgres
def test_an_email_that_used_every_attempt_is_failed_not_left_sending(brevo, django_capture_on_commit_callbacks):
    log = queued(django_capture_on_commit_callbacks)
    # Every attempt so far killed its worker: the claim stops the loop.
    EmailLog.objects.filter(pk=log.pk).update(status=EmailLog.Status.SENDING, attempts=emails.MAX_ATTEMPTS)
    send_email.delay(log.pk)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.FAILED and "Gave up after 7 attempts" in log.error and brevo.requests == []


def test_sent_and_cancelled_emails_are_never_claimed(django_capture_on_commit_callbacks):
    log = queued(django_capture_on_commit_callbacks)
    for status in (EmailLog.Status.SENT, EmailLog.Status.CANCELLED, EmailLog.Status.FAILED, EmailLog.Status.DELIVERED):
        EmailLog.objects.filter(pk=log.pk).update(status=status)
        assert email_claim_for_sending(log.pk) is None
    assert mail.outbox == []


def test_a_newline_in_a_business_name_does_not_stop_the_email(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log = queue_receipt(site_name="Café\r\nAntigua\nBcc: victim@example.com")
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT
    [message] = mail.outbox
    assert message.subject == "Your receipt: Café Antigua Bcc: victim@example.com — $495"
    assert message.to == [BUYER] and message.bcc == []
    # The header as sent decodes to the one line (long encoded headers are folded, which is not a newline of ours).
    assert str(make_header(decode_header(message.message()["Subject"]))) == message.subject


def test_header_values_from_context_builders_are_flattened():
    log = EmailLog.objects.create(kind=EmailLog.Kind.STAFF_ALERT, to_email="ops@example.com", subject="x", context={"body": "b"})
    with mock.patch.dict(emails.CONTEXT_BUILDERS, {EmailLog.Kind.STAFF_ALERT: bad_headers}):
        message = emails.email_render(log)
    assert message.extra_headers["List-Unsubscribe"] == "<https://x.test/u> <mailto:u@x.test>"
    message.message()  # would raise BadHeaderError with the raw value


def bad_headers(log):
    return {"headers": {"List-Unsubscribe": "<https://x.test/u>\n<mailto:u@x.test>"}}


def test_staff_can_send_a_failed_email_again_from_admin(admin_client, brevo, django_capture_on_commit_callbacks):
    failed = queued(django_capture_on_commit_callbacks)
    sent = queued(django_capture_on_commit_callbacks)
    EmailLog.objects.filter(pk=failed.pk).update(status=EmailLog.Status.FAILED, attempts=7, error="Outcome unknown: …")
    EmailLog.objects.filter(pk=sent.pk).update(status=EmailLog.Status.SENT)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/webmagic/emaillog/", {"action": "send_again", "_selected_action": [failed.pk, sent.pk]}, follow=True
        )
    filtered_failed = queued(django_capture_on_commit_callbacks)
    EmailLog.objects.filter(pk=filtered_failed.pk).update(status=EmailLog.Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        from_filtered_list = admin_client.post(  # the list filtered to failed emails, as staff would use it
            "/admin/webmagic/emaillog/?status__exact=failed", {"action": "send_again", "_selected_action": [filtered_failed.pk]},
            follow=True,
        )
    assert "1 failed email(s) queued again." in from_filtered_list.content.decode()
    assert "were not failed" not in from_filtered_list.content.decode()
    assert response.status_code == 200
    text = response.content.decode()
    assert "1 failed email(s) queued again." in text and "1 email(s) were not failed" in text
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert failed.status == EmailLog.Status.SENT and failed.attempts == 1 and sent.status == EmailLog.Status.SENT
    assert len(brevo.delivered) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_live_send_is_never_taken_over():
    """While one worker is inside its send (row locked), a redelivered task and the sweep both
    leave it alone; once it finished, there is nothing left to claim."""
    import threading

    log = queue_receipt()  # autocommit: the task's on_commit runs at once (eager), so send it again below
    EmailLog.objects.filter(pk=log.pk).update(status=EmailLog.Status.QUEUED, attempts=0)
    mail.outbox.clear()
    inside_send, release = threading.Event(), threading.Event()
    real_send = mail.EmailMultiAlternatives.send

    def slow_send(self, *args, **kwargs):
        inside_send.set()
        assert release.wait(20)
        return real_send(self, *args, **kwargs)

    def first_worker():
        with mock.patch.object(mail.EmailMultiAlternatives, "send", slow_send):
            claimed = email_claim_for_sending(log.pk)
            emails.email_deliver(claimed)
        return "sent"

    def redelivered():
        assert inside_send.wait(20)
        outcome = email_claim_for_sending(log.pk)  # the same row, from another connection
        release.set()
        return outcome

    results = run_together([first_worker, redelivered])
    assert results == ["sent", None]
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and log.attempts == 1 and len(mail.outbox) == 1
    assert connection.features.has_select_for_update_skip_locked


def test_without_row_locks_a_claim_is_only_taken_over_when_older_than_any_send(django_capture_on_commit_callbacks):
    log = queued(django_capture_on_commit_callbacks)
    EmailLog.objects.filter(pk=log.pk).update(status=EmailLog.Status.SENDING, attempts=1)
    with mock.patch.object(connection.features, "has_select_for_update_skip_locked", False):
        assert email_claim_for_sending(log.pk) is None  # it may still be sending
        later = timezone.now() + emails.UNLOCKED_TAKEOVER_AFTER + timedelta(seconds=1)
        assert email_claim_for_sending(log.pk, now=later) is not None


# --- An attempt whose answer was lost: retried only while Brevo remembers its key ---------------

def read_timeout_then(real_send):
    """Brevo takes the email, but its answer never comes back (a read timeout)."""
    import requests

    calls = {"n": 0}

    def send(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            real_send(self, *args, **kwargs)
            raise requests.ReadTimeout("read timed out")
        return real_send(self, *args, **kwargs)

    return send


def test_a_lost_answer_is_retried_soon_under_the_same_key_and_delivered_once(brevo, django_capture_on_commit_callbacks):
    log = queued(django_capture_on_commit_callbacks)
    countdowns = []
    with mock.patch.object(mail.EmailMultiAlternatives, "send", read_timeout_then(mail.EmailMultiAlternatives.send)):
        with mock.patch.object(send_email, "retry", side_effect=lambda exc, countdown: countdowns.append(countdown) or exc):
            with pytest.raises(Exception):
                send_email.apply(args=[log.pk], retries=5, throw=True)  # the 6th attempt: normally 16 min away
        log.refresh_from_db()
        assert log.status == EmailLog.Status.QUEUED and log.outcome_unknown_since is not None
        assert countdowns == [120]  # inside the provider's memory of the key, not 960 s
        send_email.apply(args=[log.pk], retries=6)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and log.outcome_unknown_since is None
    assert len(brevo.requests) == 2 and len(brevo.delivered) == 1


def test_a_lost_answer_older_than_the_window_is_failed_for_staff_not_resent(brevo, django_capture_on_commit_callbacks):
    log = queued(django_capture_on_commit_callbacks)
    EmailLog.objects.filter(pk=log.pk).update(
        attempts=3, error="ReadTimeout: read timed out", outcome_unknown_since=timezone.now() - emails.RESEND_WINDOW - timedelta(seconds=1),
    )
    send_email.delay(log.pk)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.FAILED and log.error.startswith("Outcome unknown") and "ReadTimeout" in log.error
    assert brevo.requests == []


@pytest.mark.parametrize(
    ("failure", "unknown"),
    [
        ("503 from Brevo", True),
        ("400 from Brevo", False),
        ("read timeout", True),
        ("connection reset after sending", True),
        ("connection refused", False),
        ("connect timeout", False),
    ],
)
def test_only_failures_the_provider_may_have_acted_on_start_the_window(failure, unknown, django_capture_on_commit_callbacks):
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

    failures = {
        "503 from Brevo": {"status": 503, "json": {"code": "service_unavailable"}},
        "400 from Brevo": {"status": 400, "json": {"code": "invalid_parameter", "message": "sender is not valid"}},
        "read timeout": {"body": requests.ReadTimeout("read timed out")},
        "connection reset after sending": {"body": requests.ConnectionError(ProtocolError("Connection aborted."))},
        "connection refused": {
            "body": requests.ConnectionError(MaxRetryError(None, "/v3/smtp/email", NewConnectionError(None, "refused")))
        },
        "connect timeout": {"body": requests.ConnectTimeout("connect timed out")},
    }
    log = queued(django_capture_on_commit_callbacks)
    with override_settings(**BREVO_SETTINGS), responses.RequestsMock() as mocked:
        mocked.add(responses.POST, "https://api.brevo.com/v3/smtp/email", **failures[failure])
        with mock.patch.object(send_email, "retry", side_effect=lambda exc, countdown: exc), pytest.raises(Exception):
            send_email.apply(args=[log.pk], throw=True)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.QUEUED and log.error
    assert (log.outcome_unknown_since is not None) == unknown


def test_send_again_is_a_new_send_with_a_new_key(brevo, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log = queue_receipt()
    first_key = brevo.requests[0]["headers"]["idempotencyKey"]
    # Brevo took it, then reported it blocked: staff fix the cause and send it again.
    EmailLog.objects.filter(pk=log.pk).update(status=EmailLog.Status.FAILED, error="blocked")
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.emails_send_again(log_ids=[log.pk]) == [log.pk]
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and log.provider_message_id == "<2@smtp-relay.mailin.fr>"
    assert brevo.requests[1]["headers"]["idempotencyKey"] != first_key and len(brevo.delivered) == 2


def test_staff_who_may_only_view_emails_cannot_send_them_again(client, django_user_model, django_capture_on_commit_callbacks):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer@webmagic.test", password="Viewer-pass-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_emaillog"))
    client.force_login(viewer)
    log = queued(django_capture_on_commit_callbacks)
    EmailLog.objects.filter(pk=log.pk).update(status=EmailLog.Status.FAILED)
    page = client.get("/admin/webmagic/emaillog/")
    assert page.status_code == 200 and "send_again" not in page.content.decode()
    client.post("/admin/webmagic/emaillog/", {"action": "send_again", "_selected_action": [log.pk]})
    log.refresh_from_db()
    assert log.status == EmailLog.Status.FAILED and mail.outbox == []
