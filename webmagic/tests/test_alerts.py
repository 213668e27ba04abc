"""Staff alerts (DESIGN §8): each rule at its boundary, at most one alert an hour per kind, delivery
by email and chat webhook, the rules registry and the `check_alerts` command."""

import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
import requests
import responses as responses_lib
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from freezegun import freeze_time

from checkout.alerts import alert_low_conversion
from checkout.models import CheckoutSession
from checkout.tests.factories import CheckoutSessionFactory
from webhooks.alerts import alert_failed_webhooks
from webhooks.models import WebhookEvent
from webmagic import alerts
from webmagic.http import thread_session
from webmagic.models import EmailLog, StaffAlert
from webmagic.tasks import check_alerts

pytestmark = pytest.mark.django_db

NOW = "2026-03-10 12:00:00+00:00"
HOOK = "https://chat.example.test/hooks/T0KEN-s3cret"
HEARTBEAT_RULE = "webmagic.alerts.alert_worker_heartbeat"


@pytest.fixture(autouse=True)
def no_heartbeat_rule(monkeypatch):
    """A test database has no heartbeat, so that rule would fire in every run; its own tests are in
    test_heartbeat.py."""
    monkeypatch.delitem(alerts.ALERT_RULES, HEARTBEAT_RULE)


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """Run the on-commit deliveries (and the queued email tasks they enqueue) as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def hook(settings):
    settings.ALERT_WEBHOOK_URL = HOOK
    with responses_lib.RequestsMock() as mock:
        yield mock


def delivered(results):
    return [result.alert.kind for result in results if result.delivered]


def failed_events(n, *, minutes_ago=1):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    for i in range(n):
        WebhookEvent.objects.create(
            delivery_id=f"msg_{minutes_ago}_{i}", event_type="payment_intent.succeeded", raw_body="{}", payload={},
            status=WebhookEvent.Status.FAILED, processing_started_at=at, attempts=1, error="boom",
        )


def alert_emails():
    return list(EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT))


def sessions(*, completed, abandoned, hours_ago=2):
    created = []
    for status, n in ((CheckoutSession.Status.COMPLETED, completed), (CheckoutSession.Status.ABANDONED, abandoned)):
        for _ in range(n):
            created.append(CheckoutSessionFactory(status=status).pk)
    CheckoutSession.objects.filter(pk__in=created).update(created_at=timezone.now() - timedelta(hours=hours_ago))


def email(kind, status, *, attempts=1, error="", minutes_ago=5):
    log = EmailLog.objects.create(kind=kind, to_email="someone@example.com", status=status, attempts=attempts, error=error)
    EmailLog.objects.filter(pk=log.pk).update(updated_at=timezone.now() - timedelta(minutes=minutes_ago))
    return log


# --- Failed webhooks (webhooks/alerts.py) -------------------------------------------------------

@freeze_time(NOW)
def test_more_than_five_failed_webhooks_in_ten_minutes_alerts_admins(deliver):
    failed_events(6)
    with deliver():
        assert delivered(alerts.alerts_check()) == ["failed_webhooks"]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alerts@webmagic.test"]
    assert mail.outbox[0].subject == "[WebMagic alert] 6 Recurrente webhook events failed in the last 10 minutes"
    (alert,) = StaffAlert.objects.all()
    assert alert.kind == "failed_webhooks" and alert.emailed and not alert.direct and alert.delivered_at
    assert not alert.webhook_posted and "webhook: not configured" in alert.delivery_notes


@freeze_time(NOW)
def test_five_failures_or_older_ones_do_not_alert():
    failed_events(5)
    failed_events(3, minutes_ago=11)  # outside the 10-minute window
    assert alert_failed_webhooks(now=timezone.now()) is None
    assert delivered(alerts.alerts_check()) == []
    assert alert_emails() == [] and not StaffAlert.objects.exists()


def test_the_webhooks_and_checkout_rules_are_registered_by_their_apps():
    assert alerts.ALERT_RULES["webhooks.alerts.alert_failed_webhooks"] is alert_failed_webhooks
    assert alerts.ALERT_RULES["checkout.alerts.alert_low_conversion"] is alert_low_conversion


# --- At most once an hour ---------------------------------------------------------------------

def test_an_alert_is_delivered_at_most_once_an_hour_while_it_keeps_firing(deliver):
    with freeze_time("2026-03-10 10:55:00+00:00") as frozen, deliver():
        failed_events(6)
        assert delivered(alerts.alerts_check()) == ["failed_webhooks"]
        for moment in ("11:00", "11:25", "11:54"):  # 30 minutes later, and across the clock hour
            frozen.move_to(f"2026-03-10 {moment}:00+00:00")
            WebhookEvent.objects.update(processing_started_at=timezone.now())  # still failing
            (result,) = [r for r in alerts.alerts_check() if r.fired]
            assert result.suppressed and not result.delivered
        frozen.move_to("2026-03-10 11:56:00+00:00")  # 61 minutes after the first
        WebhookEvent.objects.update(processing_started_at=timezone.now())
        assert delivered(alerts.alerts_check()) == ["failed_webhooks"]
    assert len(alert_emails()) == 2 and len(mail.outbox) == 2
    assert list(StaffAlert.objects.order_by("sequence").values_list("sequence", flat=True)) == [1, 2]


def test_suppression_is_per_kind(deliver):
    with deliver():
        assert alerts.alert_raise(kind="a", subject="A", body="a") is True
        assert alerts.alert_raise(kind="b", subject="B", body="b") is True
        assert alerts.alert_raise(kind="a", subject="A again", body="a") is False
    assert [m.subject for m in mail.outbox] == ["[WebMagic alert] A", "[WebMagic alert] B"]


def test_the_database_refuses_a_second_claim_of_the_same_alert():
    """What two runs that read the same latest alert race for (PostgreSQL test: test_alerts_postgres)."""
    StaffAlert.objects.create(kind="failed_webhooks", sequence=1, subject="s", body="b", fired_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        StaffAlert.objects.create(kind="failed_webhooks", sequence=1, subject="s", body="b", fired_at=timezone.now())


# --- alert_raise in transactions --------------------------------------------------------------

class Rollback(Exception):
    pass


def test_alert_raise_in_a_transaction_that_rolls_back_delivers_nothing(deliver, hook):
    with deliver() as callbacks:
        with pytest.raises(Rollback), transaction.atomic():
            assert alerts.alert_raise(kind="unannounced_payment", subject="Payment pa_1 found", body="b") is True
            raise Rollback
    assert callbacks == [] and mail.outbox == [] and alert_emails() == []
    assert len(hook.calls) == 0
    assert not StaffAlert.objects.exists()  # the claim went with the rollback: a later raise may deliver


def test_alert_raise_in_a_transaction_delivers_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        assert alerts.alert_raise(kind="unannounced_payment", subject="Payment pa_1 found", body="b") is True
    assert mail.outbox == [] and len(callbacks) == 1  # nothing sent before the commit
    with django_capture_on_commit_callbacks(execute=True):
        callbacks[0]()
    assert [m.subject for m in mail.outbox] == ["[WebMagic alert] Payment pa_1 found"]


def test_alert_raise_direct_sends_synchronously_and_logs_the_email(deliver):
    with deliver():
        assert alerts.alert_raise(kind="k", subject="Now", body="Body text", direct=True) is True
    (log,) = alert_emails()
    assert log.status == EmailLog.Status.SENT and log.attempts == 1 and log.sent_at
    assert len(mail.outbox) == 1 and "Body text" in mail.outbox[0].body
    assert StaffAlert.objects.get().direct


def test_a_direct_email_that_fails_is_logged_failed_and_the_webhook_still_goes(deliver, hook, monkeypatch):
    from django.core.mail import EmailMultiAlternatives

    def refuse(self, *args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(EmailMultiAlternatives, "send", refuse)
    hook.add(responses_lib.POST, HOOK, json={"ok": True})
    with deliver():
        assert alerts.alert_raise(kind="k", subject="S", body="B", direct=True) is True
    (log,) = alert_emails()
    assert log.status == EmailLog.Status.FAILED and "ConnectionRefusedError" in log.error
    assert len(hook.calls) == 1
    alert = StaffAlert.objects.get()
    assert not alert.emailed and alert.webhook_posted


# --- Chat webhook -------------------------------------------------------------------------------

@freeze_time(NOW)
def test_the_alert_is_posted_as_json_when_alert_webhook_url_is_set(deliver, hook):
    hook.add(responses_lib.POST, HOOK, json={"ok": True})
    failed_events(6)
    with deliver():
        alerts.alerts_check()
    (call,) = hook.calls
    sent = json.loads(call.request.body)
    subject = "6 Recurrente webhook events failed in the last 10 minutes"
    assert sent["kind"] == "failed_webhooks" and sent["subject"] == subject
    assert sent["text"] == f"{subject}\n{sent['body']}" and "Reprocess" in sent["body"]
    assert sent["fired_at"] == "2026-03-10T12:00:00+00:00"
    assert call.request.headers["Content-Type"] == "application/json"
    assert len(mail.outbox) == 1  # and the email still goes
    assert StaffAlert.objects.get().webhook_posted


def test_nothing_is_posted_when_alert_webhook_url_is_unset(deliver, settings):
    settings.ALERT_WEBHOOK_URL = ""
    with responses_lib.RequestsMock() as mock, deliver():  # any request would fail: none registered
        assert alerts.alert_raise(kind="k", subject="S", body="B") is True
    assert len(mock.calls) == 0 and len(mail.outbox) == 1


@pytest.mark.parametrize("answer", [
    {"status": 500, "json": {"error": "down"}},
    {"body": requests.exceptions.ReadTimeout("read timed out")},
    {"body": requests.exceptions.ConnectionError(f"cannot connect to {HOOK}")},
])
def test_a_failing_webhook_endpoint_never_breaks_the_alert(deliver, hook, caplog, answer):
    hook.add(responses_lib.POST, HOOK, **answer)
    with caplog.at_level(logging.INFO), deliver():
        assert alerts.alert_raise(kind="k", subject="S", body="B") is True
    assert len(hook.calls) == 1 and len(mail.outbox) == 1
    alert = StaffAlert.objects.get()
    assert alert.emailed and not alert.webhook_posted and alert.delivered_at
    assert "webhook: " in alert.delivery_notes
    assert "T0KEN" not in caplog.text and "chat.example.test" not in caplog.text  # the URL is a secret


def test_the_webhook_goes_through_this_threads_session_with_short_timeouts(deliver, hook, monkeypatch):
    seen = {}
    session = thread_session()  # delivery runs on commit, in this thread
    original = session.post

    def spy(url, **kwargs):
        seen.update(kwargs)
        return original(url, **kwargs)

    monkeypatch.setattr(session, "post", spy)
    hook.add(responses_lib.POST, HOOK, json={})
    with deliver():
        alerts.alert_raise(kind="k", subject="S", body="B")
    assert seen["timeout"] == (3, 5) and seen["allow_redirects"] is False


def test_a_redirect_from_the_webhook_is_not_followed(deliver, hook):
    hook.add(responses_lib.POST, HOOK, status=302, headers={"Location": "https://elsewhere.example.test/collect"})
    hook.add(responses_lib.POST, "https://elsewhere.example.test/collect", json={})
    hook.assert_all_requests_are_fired = False
    with deliver():
        alerts.alert_raise(kind="k", subject="S", body="B")
    assert [call.request.url for call in hook.calls] == [HOOK]
    alert = StaffAlert.objects.get()
    assert not alert.webhook_posted and "HTTP 302" in alert.delivery_notes


# --- Transactional emails -----------------------------------------------------------------------

@freeze_time(NOW)
@pytest.mark.parametrize("kind", ["welcome", "receipt", "password_reset", "verify_email"])
def test_one_failed_transactional_email_alerts(kind):
    log = email(kind, EmailLog.Status.FAILED, attempts=7, error="AnymailAPIError: 401 Key not found")
    alert = alerts.alert_transactional_emails_failing(now=timezone.now())
    assert alert.kind == "transactional_emails_failing"
    assert f"email {log.pk} ({kind}, failed after 7 attempt(s)): AnymailAPIError: 401 Key not found" in alert.body
    assert "someone@example.com" not in alert.body  # ids, not addresses: the body goes to a chat service too


@freeze_time(NOW)
def test_a_transactional_email_retrying_after_provider_errors_alerts_before_it_fails_for_good():
    email("receipt", EmailLog.Status.QUEUED, attempts=1, error="AnymailAPIError: 401")  # one failure may be luck
    email("receipt", EmailLog.Status.QUEUED, attempts=2, error="")  # attempts without an error: not failing
    assert alerts.alert_transactional_emails_failing(now=timezone.now()) is None
    email("welcome", EmailLog.Status.QUEUED, attempts=2, error="AnymailAPIError: 401")
    assert "retrying after 2 attempt(s)" in alerts.alert_transactional_emails_failing(now=timezone.now()).body


@freeze_time(NOW)
def test_old_failures_sent_emails_and_non_transactional_kinds_do_not_alert():
    email("receipt", EmailLog.Status.FAILED, error="x", minutes_ago=61)
    email("receipt", EmailLog.Status.SENT)
    email("recovery_reminder", EmailLog.Status.FAILED, error="x")
    email("staff_alert", EmailLog.Status.FAILED, error="x")  # an alert about alerts would loop
    assert alerts.alert_transactional_emails_failing(now=timezone.now()) is None


@freeze_time(NOW)
def test_a_reset_email_cancelled_for_an_address_with_no_account_does_not_alert():
    """The reset form queues an email for every address asked about; those with no account end
    cancelled (customers.emails.password_reset_context), which is the form working, not failing."""
    email("password_reset", EmailLog.Status.CANCELLED, attempts=1, error="no active account uses this address")
    assert alerts.alert_transactional_emails_failing(now=timezone.now()) is None
    email("password_reset", EmailLog.Status.FAILED, attempts=7, error="AnymailAPIError: 401")
    assert "(password_reset, failed after 7" in alerts.alert_transactional_emails_failing(now=timezone.now()).body


@freeze_time(NOW)
def test_a_failed_refund_email_alerts_like_any_transactional_email(monkeypatch):
    email("refund", EmailLog.Status.FAILED, error="x")
    assert "(refund, failed" in alerts.alert_transactional_emails_failing(now=timezone.now()).body
    monkeypatch.setattr(alerts, "TRANSACTIONAL_KINDS", tuple(k for k in alerts.TRANSACTIONAL_KINDS if k != "refund"))
    assert alerts.alert_transactional_emails_failing(now=timezone.now()) is None  # the rule reads the tuple


# --- Recovery reminders -------------------------------------------------------------------------

@freeze_time(NOW)
def test_one_failed_reminder_alone_does_not_alert():
    email("recovery_reminder", EmailLog.Status.FAILED, error="x")
    email("recovery_reminder", EmailLog.Status.DELIVERED)
    email("recovery_reminder", EmailLog.Status.BOUNCED, minutes_ago=25 * 60)  # outside 24 hours
    assert alerts.alert_recovery_emails_failing(now=timezone.now()) is None


@freeze_time(NOW)
def test_two_failed_or_bounced_reminders_in_24_hours_alert():
    email("recovery_reminder", EmailLog.Status.FAILED, error="x", minutes_ago=23 * 60)
    email("recovery_reminder", EmailLog.Status.BOUNCED)
    assert delivered(alerts.alerts_check()) == ["recovery_emails_failing"]


# --- Conversion (checkout/alerts.py) ------------------------------------------------------------

@freeze_time(NOW)
def test_none_paid_of_five_started_in_seven_days_alerts():
    sessions(completed=0, abandoned=3, hours_ago=2)
    sessions(completed=0, abandoned=2, hours_ago=6 * 24)
    assert delivered(alerts.alerts_check()) == ["low_conversion"]
    assert StaffAlert.objects.get().subject == "No purchase paid out of 5 attempts in the last 7 days"


@freeze_time(NOW)
def test_four_started_or_one_paid_of_five_do_not_alert():
    sessions(completed=0, abandoned=4)
    assert alert_low_conversion(now=timezone.now()) is None
    sessions(completed=1, abandoned=0)
    assert alert_low_conversion(now=timezone.now()) is None


@freeze_time(NOW)
def test_conversion_leaves_out_attempts_older_than_7_days_and_still_in_progress():
    sessions(completed=0, abandoned=4)
    sessions(completed=0, abandoned=5, hours_ago=8 * 24)
    sessions(completed=0, abandoned=5, hours_ago=0)  # created just now: buyers may still be paying
    assert alert_low_conversion(now=timezone.now()) is None
    sessions(completed=0, abandoned=1, hours_ago=1)  # old enough: now 5 in the window
    assert alert_low_conversion(now=timezone.now()) is not None


# --- Registry -----------------------------------------------------------------------------------

def test_a_broken_rule_does_not_stop_the_others(monkeypatch, caplog):
    def broken(*, now):
        raise RuntimeError("bug")

    # First in line, so the rules after it must still run.
    monkeypatch.setattr(alerts, "ALERT_RULES", {"broken": broken, **alerts.ALERT_RULES})
    failed_events(6)
    results = alerts.alerts_check()
    assert results[0].rule == "broken" and results[0].error == "RuntimeError" and not results[0].fired
    assert delivered(results) == ["failed_webhooks"]
    assert "alert rule broken failed" in caplog.text


def test_a_rule_registered_with_the_decorator_runs(monkeypatch):
    monkeypatch.setattr(alerts, "ALERT_RULES", {})

    @alerts.alert_rule_register
    def always(*, now):
        return alerts.Alert(kind="always", subject="Always", body="b")

    alerts.alert_rule_register(always)  # again (a re-run ready()): replaced, not duplicated
    (result,) = alerts.alerts_check()
    assert result.rule.endswith("always") and result.delivered


# --- Task, command and schedule -----------------------------------------------------------------

def test_check_alerts_task_returns_the_kinds_delivered(deliver):
    failed_events(6)
    with deliver():
        assert check_alerts.delay().get() == ["failed_webhooks"]
        assert check_alerts.delay().get() == []  # the repeat within the hour
    assert "6 Recurrente webhook events failed" in mail.outbox[0].subject and len(mail.outbox) == 1


def test_check_alerts_command_prints_each_rule_and_delivers_directly(deliver):
    failed_events(6)
    out = StringIO()
    with deliver():
        call_command("check_alerts", stdout=out)
    lines = out.getvalue().splitlines()
    assert "webhooks.alerts.alert_failed_webhooks: FIRED failed_webhooks, delivered: 6 Recurrente webhook events " \
           "failed in the last 10 minutes" in lines
    assert "checkout.alerts.alert_low_conversion: ok" in lines
    assert "webhooks.rejections.alert_rejected_deliveries: ok" in lines
    assert "webhooks.rejections.alert_rejections_without_accepted: ok" in lines
    assert lines[-1] == f"{len(lines) - 1} rules: 1 fired, 1 delivered, 0 suppressed, 0 broken"
    assert StaffAlert.objects.get().direct and alert_emails()[0].status == EmailLog.Status.SENT and len(mail.outbox) == 1

    out = StringIO()
    with deliver():
        call_command("check_alerts", stdout=out)
    assert "FIRED failed_webhooks, suppressed (already alerted within the hour)" in out.getvalue()
    assert len(mail.outbox) == 1


def test_alerts_run_every_five_minutes_from_beat_reusing_a_5_minute_schedule():
    import importlib

    from django.apps import apps as django_apps
    from django_celery_beat.models import IntervalSchedule

    migration = importlib.import_module("webmagic.migrations.0005_alerts_periodic_task")
    # Run the migration's function (transactional tests elsewhere may have flushed its row).
    PeriodicTask.objects.filter(name=migration.TASK_NAME).delete()
    existing, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    migration.create_task(django_apps, None)
    migration.create_task(django_apps, None)  # idempotent
    task = PeriodicTask.objects.get(task="webmagic.tasks.check_alerts")
    assert task.enabled and task.interval_id == existing.pk
    assert IntervalSchedule.objects.filter(every=5, period="minutes").count() == 1


# --- Admin --------------------------------------------------------------------------------------

def test_staff_alerts_are_listed_read_only_in_admin(staff_client):
    from webmagic.tests.admin_queries import assert_constant_queries

    def make(n):
        start = StaffAlert.objects.count()
        for i in range(start, start + n):
            StaffAlert.objects.create(kind=f"kind{i}", sequence=1, subject=f"Alert {i}", body="b", fired_at=timezone.now())

    assert_constant_queries(staff_client, "/admin/webmagic/staffalert/", make)
    alert = StaffAlert.objects.first()
    assert "Alert" in staff_client.get("/admin/webmagic/staffalert/").content.decode()
    assert staff_client.get("/admin/webmagic/staffalert/add/").status_code == 403
    assert staff_client.post(f"/admin/webmagic/staffalert/{alert.pk}/change/", {"subject": "x"}).status_code == 403
    assert staff_client.get(f"/admin/webmagic/staffalert/{alert.pk}/delete/").status_code == 403
