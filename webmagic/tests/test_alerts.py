"""Staff alerts (DESIGN §8): each rule, its minimum sample, and at most one email an hour per kind."""

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from freezegun import freeze_time

from checkout.models import CheckoutSession
from checkout.tests.factories import CheckoutSessionFactory
from webhooks.models import WebhookEvent
from webmagic import alerts
from webmagic.models import EmailLog
from webmagic.tasks import check_alerts

pytestmark = pytest.mark.django_db

NOW = "2026-03-10 12:00:00+00:00"


def no_queue():
    return None


def failed_events(n, *, minutes_ago=1):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    for i in range(n):
        WebhookEvent.objects.create(
            delivery_id=f"msg_{minutes_ago}_{i}", event_type="payment_intent.succeeded", raw_body="{}", payload={},
            status=WebhookEvent.Status.FAILED, processing_started_at=at, attempts=1, error="boom",
        )


def alert_emails(kind=None):
    logs = EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT)
    if kind:
        logs = logs.filter(dedupe_key__startswith=f"alert:{kind}:")
    return list(logs)


def sessions(*, completed, abandoned, hours_ago=2):
    created = []
    for status, n in ((CheckoutSession.Status.COMPLETED, completed), (CheckoutSession.Status.ABANDONED, abandoned)):
        for _ in range(n):
            created.append(CheckoutSessionFactory(status=status).pk)
    CheckoutSession.objects.filter(pk__in=created).update(created_at=timezone.now() - timedelta(hours=hours_ago))


def reminders(*, sent, failed):
    for i in range(sent + failed):
        EmailLog.objects.create(
            kind=EmailLog.Kind.RECOVERY_REMINDER, to_email=f"r{i}@example.com",
            status=EmailLog.Status.FAILED if i < failed else EmailLog.Status.DELIVERED,
        )


# --- Failed webhooks --------------------------------------------------------------------------

@freeze_time(NOW)
def test_more_than_five_failed_webhooks_in_ten_minutes_alerts_admins(django_capture_on_commit_callbacks):
    failed_events(6)
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts.alerts_check(queue_length=no_queue) == ["failed_webhooks"]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alerts@webmagic.test"]
    assert "6 Recurrente webhook events failed" in mail.outbox[0].subject


@freeze_time(NOW)
def test_five_failures_or_older_ones_do_not_alert():
    failed_events(5)
    failed_events(3, minutes_ago=11)  # outside the 10-minute window
    assert alerts.alert_failed_webhooks(now=timezone.now()) is None
    assert alerts.alerts_check(queue_length=no_queue) == []
    assert alert_emails() == []


def test_an_alert_is_mailed_at_most_once_an_hour_while_it_keeps_firing():
    with freeze_time("2026-03-10 10:55:00+00:00") as frozen:
        failed_events(6)
        assert alerts.alerts_check(queue_length=no_queue) == ["failed_webhooks"]
        for moment in ("11:00", "11:05", "11:30", "11:54"):  # across the clock hour too
            frozen.move_to(f"2026-03-10 {moment}:00+00:00")
            WebhookEvent.objects.update(processing_started_at=timezone.now())  # still failing
            assert alerts.alerts_check(queue_length=no_queue) == []
        frozen.move_to("2026-03-10 11:56:00+00:00")
        WebhookEvent.objects.update(processing_started_at=timezone.now())
        assert alerts.alerts_check(queue_length=no_queue) == ["failed_webhooks"]
    assert len(alert_emails("failed_webhooks")) == 2


def test_two_overlapping_runs_in_one_hour_mail_once():
    """The dedupe key is the guard when two runs pass the "sent in the last hour?" check together."""
    failed_events(6)
    now = timezone.now()
    alert = alerts.alert_failed_webhooks(now=now)
    from webmagic.emails import email_alert_staff

    email_alert_staff(subject=alert.subject, body=alert.body, dedupe_key=f"alert:failed_webhooks:{now:%Y%m%d%H}")
    # The second run reaches the send at once (as if it had checked before the first one wrote).
    assert email_alert_staff(subject=alert.subject, body=alert.body, dedupe_key=f"alert:failed_webhooks:{now:%Y%m%d%H}") == []
    assert len(alert_emails("failed_webhooks")) == 1


# --- Conversion -------------------------------------------------------------------------------

@freeze_time(NOW)
def test_conversion_under_half_over_24_hours_alerts():
    sessions(completed=4, abandoned=6)
    assert alerts.alerts_check(queue_length=no_queue) == ["low_conversion"]
    (log,) = alert_emails("low_conversion")
    assert "40.0 %" in log.subject


@freeze_time(NOW)
def test_conversion_alert_needs_a_minimum_sample_and_a_low_rate():
    sessions(completed=1, abandoned=8)  # 9 attempts: too few to judge
    assert alerts.alert_low_conversion(now=timezone.now()) is None
    sessions(completed=4, abandoned=0)  # 13 attempts, 5 paid: 38 % -> fires
    assert alerts.alert_low_conversion(now=timezone.now()) is not None
    sessions(completed=3, abandoned=0)  # 16 attempts, 8 paid: 50 % is not "under 50 %"
    assert alerts.alert_low_conversion(now=timezone.now()) is None


@freeze_time(NOW)
def test_conversion_ignores_attempts_older_than_24_hours_and_still_in_progress():
    sessions(completed=0, abandoned=10, hours_ago=25)
    sessions(completed=0, abandoned=10, hours_ago=0)  # created just now: buyers may still be paying
    assert alerts.alert_low_conversion(now=timezone.now()) is None


# --- Recovery emails --------------------------------------------------------------------------

@freeze_time(NOW)
def test_more_than_ten_percent_of_recovery_emails_failing_alerts():
    reminders(sent=17, failed=3)  # 15 %
    assert alerts.alerts_check(queue_length=no_queue) == ["recovery_emails_failing"]


@freeze_time(NOW)
def test_recovery_failures_at_ten_percent_or_too_few_emails_do_not_alert():
    reminders(sent=18, failed=2)  # exactly 10 %
    assert alerts.alert_recovery_emails_failing(now=timezone.now()) is None
    EmailLog.objects.all().delete()
    reminders(sent=5, failed=4)  # 9 emails: below the sample
    assert alerts.alert_recovery_emails_failing(now=timezone.now()) is None


# --- Queue ------------------------------------------------------------------------------------

def test_queue_over_100_waiting_alerts_and_an_unreadable_broker_is_skipped():
    assert alerts.alert_queue_backlog(now=timezone.now(), queue_length=lambda: 100) is None
    assert alerts.alert_queue_backlog(now=timezone.now(), queue_length=lambda: None) is None

    def broken():
        raise ConnectionError("redis down")

    assert alerts.alert_queue_backlog(now=timezone.now(), queue_length=broken) is None
    assert alerts.alerts_check(queue_length=lambda: 101) == ["queue_backlog"]


def test_queue_length_is_skipped_when_the_broker_is_not_redis(settings):
    settings.CELERY_BROKER_URL = "memory://"  # a transport that cannot be asked
    assert alerts.broker_queue_length() is None


def test_queue_length_reads_the_redis_queue(monkeypatch, settings):
    import redis

    from webmagic.celery import app

    url = "redis://127.0.0.1:6379/13"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis server on 127.0.0.1:6379 (CI has one)")
    queue = f"alerts-test-{uuid.uuid4().hex}"
    settings.CELERY_BROKER_URL = url
    monkeypatch.setitem(app.conf, "task_default_queue", queue)
    client.rpush(queue, *["task"] * 3)
    try:
        assert alerts.broker_queue_length() == 3
    finally:
        client.delete(queue)


def test_one_failing_rule_does_not_silence_the_others(monkeypatch):
    def broken(*, now):
        raise RuntimeError("bug")

    monkeypatch.setattr(alerts, "alert_failed_webhooks", broken)
    assert alerts.alerts_check(queue_length=lambda: 500) == ["queue_backlog"]


# --- Task and schedule ------------------------------------------------------------------------

def test_check_alerts_task_mails_what_fires(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(alerts, "broker_queue_length", lambda: 250)
    with django_capture_on_commit_callbacks(execute=True):
        assert check_alerts.delay().get() == ["queue_backlog"]
    assert "250 tasks waiting" in mail.outbox[0].subject


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
