from unittest import mock

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings

from webmagic import emails
from webmagic.emails import email_alert_staff, email_queue
from webmagic.models import EmailLog
from webmagic.tasks import send_email

pytestmark = pytest.mark.django_db


def queue_alert(**kwargs):
    return email_queue(
        kind=EmailLog.Kind.STAFF_ALERT, to_email="ops@example.com", context={"subject": "Hello <b>", "body": "<script>x</script>"},
        **kwargs,
    )


def test_email_is_sent_after_commit_and_logged(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        log = queue_alert()
        assert mail.outbox == []  # nothing leaves before the transaction commits
    assert len(callbacks) == 1
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and log.attempts == 1 and log.sent_at
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    html = message.alternatives[0][0]
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert "<script>x</script>" in message.body  # plain text is not HTML
    assert "1 Example Street" in message.body


def test_rolled_back_transaction_sends_nothing(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                queue_alert()
                raise RuntimeError("rollback")
        except RuntimeError:
            pass
    assert mail.outbox == [] and EmailLog.objects.count() == 0


def test_dedupe_key_sends_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert queue_alert(dedupe_key="alert:1") is not None
        assert queue_alert(dedupe_key="alert:1") is None
    assert len(mail.outbox) == 1 and EmailLog.objects.count() == 1


def test_a_redelivered_task_does_not_send_twice(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log = queue_alert()
    send_email.delay(log.pk)
    assert len(mail.outbox) == 1


def test_provider_failure_is_retried_then_succeeds(django_capture_on_commit_callbacks):
    calls = {"n": 0}
    real_send = mail.EmailMultiAlternatives.send

    def flaky_send(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("provider down")
        return real_send(self, *args, **kwargs)

    countdowns = []

    def record_retry(exc, countdown):
        countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)  # what the worker would schedule; run by hand below

    with mock.patch.object(mail.EmailMultiAlternatives, "send", flaky_send), mock.patch.object(
        send_email, "retry", side_effect=record_retry
    ):
        with django_capture_on_commit_callbacks(execute=False):
            log = queue_alert()
        # What the worker does: the first two tries fail and ask for a retry with backoff.
        for attempt in range(2):
            result = send_email.apply(args=[log.pk], retries=attempt, throw=False)
            assert result.state == "RETRY"
            log.refresh_from_db()
            assert log.status == EmailLog.Status.QUEUED and log.attempts == attempt + 1 and "provider down" in log.error
        assert send_email.apply(args=[log.pk], retries=2, throw=False).successful()
    log.refresh_from_db()
    assert calls["n"] == 3
    assert countdowns == [30, 60]  # exponential backoff
    assert log.status == EmailLog.Status.SENT and log.attempts == 3 and log.error == ""
    assert len(mail.outbox) == 1


def test_provider_failing_for_good_marks_the_log_failed(django_capture_on_commit_callbacks):
    with mock.patch.object(mail.EmailMultiAlternatives, "send", side_effect=ConnectionError("down")):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            log = queue_alert()
        result = send_email.apply(args=[log.pk], retries=send_email.max_retries)
    assert callbacks and result.successful()
    log.refresh_from_db()
    assert log.status == EmailLog.Status.FAILED and "down" in log.error


@override_settings(ADMINS=[("A", "a@example.com"), ("B", "b@example.com")])
def test_staff_alert_goes_to_every_admin(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        email_alert_staff(subject="Payment needs refund", body="pa_1", dedupe_key="refund:pa_1")
        email_alert_staff(subject="Payment needs refund", body="pa_1", dedupe_key="refund:pa_1")
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.com", "b@example.com"]


def test_broker_down_at_commit_keeps_the_callers_work_and_the_sweep_sends_later(django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from webmagic.tasks import resend_stuck_emails

    with mock.patch("webmagic.tasks.send_email") as task:
        task.delay.side_effect = ConnectionError("broker down")
        with django_capture_on_commit_callbacks(execute=True):
            log = queue_alert()  # does not raise: robust on-commit
    # (Django's own error mail to ADMINS reports the broker failure; our email did not go.)
    assert [m for m in mail.outbox if m.to == ["ops@example.com"]] == []
    assert resend_stuck_emails() == 0  # too fresh: a worker may still pick it up
    EmailLog.objects.filter(pk=log.pk).update(updated_at=timezone.now() - timedelta(minutes=21))
    assert resend_stuck_emails() == 1
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and len([m for m in mail.outbox if m.to == ["ops@example.com"]]) == 1
    EmailLog.objects.filter(pk=log.pk).update(updated_at=timezone.now() - timedelta(minutes=21))
    assert resend_stuck_emails() == 0  # sent emails are never re-sent


@pytest.mark.postgres  # the immediate takeover relies on row locks
def test_sweep_resends_an_email_whose_worker_died_mid_send_once(django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from webmagic.tasks import resend_stuck_emails

    with django_capture_on_commit_callbacks(execute=False):
        log = queue_alert()
    # Claimed (committed), then the worker died: no live transaction holds the row.
    EmailLog.objects.filter(pk=log.pk).update(status=EmailLog.Status.SENDING, attempts=1, updated_at=timezone.now() - timedelta(minutes=3))
    assert resend_stuck_emails() == 1
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and log.attempts == 2 and len(mail.outbox) == 1
    assert mail.outbox[0].extra_headers["idempotencyKey"]  # the provider drops it if the first attempt did go
    assert resend_stuck_emails() == 0


def test_email_sweep_is_scheduled_by_a_migration():
    import importlib

    from django.apps import apps as django_apps
    from django_celery_beat.models import PeriodicTask

    migration = importlib.import_module("webmagic.migrations.0004_email_sweep_periodic_task")
    PeriodicTask.objects.filter(name=migration.TASK_NAME).delete()  # transactional tests may have flushed it
    migration.create_task(django_apps, None)
    task = PeriodicTask.objects.get(name=migration.TASK_NAME)
    assert task.task == "webmagic.tasks.resend_stuck_emails" and task.enabled and task.interval.every == 10


def test_email_sweep_runs_every_two_minutes_unless_staff_changed_it():
    import importlib

    from django.apps import apps as django_apps
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    first = importlib.import_module("webmagic.migrations.0004_email_sweep_periodic_task")
    faster = importlib.import_module("webmagic.migrations.0010_email_sweep_every_two_minutes")
    PeriodicTask.objects.filter(name=first.TASK_NAME).delete()
    first.create_task(django_apps, None)
    faster.every_two_minutes(django_apps, None)
    task = PeriodicTask.objects.get(name=first.TASK_NAME)
    assert (task.interval.every, task.interval.period) == (2, "minutes") and "sending" in task.description

    staff_choice, _ = IntervalSchedule.objects.get_or_create(every=30, period="minutes")
    PeriodicTask.objects.filter(pk=task.pk).update(interval=staff_choice)
    faster.every_two_minutes(django_apps, None)
    assert PeriodicTask.objects.get(pk=task.pk).interval == staff_choice


# --- Context builders: each app registers its own from AppConfig.ready() ------------------------

def test_a_kind_that_needs_a_context_builder_and_has_none_fails_with_a_clear_error():
    log = EmailLog.objects.create(kind=EmailLog.Kind.WELCOME, to_email="maria@example.com", subject="Welcome")
    with mock.patch.dict(emails.CONTEXT_BUILDERS):
        del emails.CONTEXT_BUILDERS[EmailLog.Kind.WELCOME]
        with pytest.raises(ImproperlyConfigured, match=r"'welcome' needs a context builder .*context_builder_register\(\)"):
            emails.email_render(log)


def test_a_context_builder_for_a_kind_that_does_not_exist_is_refused():
    with mock.patch.dict(emails.CONTEXT_BUILDERS), pytest.raises(ValueError, match="'welcom'.* not an EmailLog kind"):
        emails.context_builder_register("welcom", lambda log: {})


def test_each_app_registers_the_builders_of_its_own_kinds():
    owners = {kind: emails.CONTEXT_BUILDERS[kind].__module__ for kind in emails.KINDS_NEEDING_CONTEXT_BUILDER}
    assert owners == {
        EmailLog.Kind.WELCOME: "customers.emails",
        EmailLog.Kind.PASSWORD_RESET: "customers.emails",
        EmailLog.Kind.VERIFY_EMAIL: "customers.emails",
        EmailLog.Kind.RECOVERY_REMINDER: "checkout.email_context_builders",
    }


def test_a_registered_builder_gives_its_context_when_the_email_is_sent():
    log = EmailLog.objects.create(kind=EmailLog.Kind.STAFF_ALERT, to_email="ops@example.com", subject="x", context={"body": "b"})
    with mock.patch.dict(emails.CONTEXT_BUILDERS):
        emails.context_builder_register(EmailLog.Kind.STAFF_ALERT, lambda log: {"body": f"made at send time for {log.pk}"})
        message = emails.email_render(log)
    assert f"made at send time for {log.pk}" in message.body
    assert EmailLog.Kind.STAFF_ALERT not in emails.CONTEXT_BUILDERS  # staff alerts need none
