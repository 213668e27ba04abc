"""Worker heartbeat (DESIGN §8): the periodic task stamps it, /healthz/ reports it, and a stale one
is alerted from outside the queue (directly, at most once an hour)."""

import importlib
from datetime import timedelta
from io import StringIO

import pytest
import responses as responses_lib
from django.apps import apps as django_apps
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from freezegun import freeze_time

from webmagic import alerts
from webmagic.models import EmailLog, Heartbeat, StaffAlert
from webmagic.tasks import heartbeat

pytestmark = pytest.mark.django_db

HOOK = "https://chat.example.test/hooks/T0KEN-s3cret"


def beat(minutes_ago):
    Heartbeat.objects.update_or_create(name="worker", defaults={"beat_at": timezone.now() - timedelta(minutes=minutes_ago)})


@freeze_time("2026-03-10 12:00:00+00:00")
def test_the_heartbeat_task_stamps_the_worker_heartbeat():
    beat(30)
    heartbeat.delay()
    assert Heartbeat.objects.get(name="worker").beat_at == timezone.now()


@freeze_time("2026-03-10 12:00:00+00:00")
def test_heartbeat_status_is_ok_stale_or_never():
    assert alerts.heartbeat_status() == "never"
    beat(10)
    assert alerts.heartbeat_status() == "ok"
    beat(11)
    assert alerts.heartbeat_status() == "stale"


@freeze_time("2026-03-10 12:00:00+00:00")
def test_the_heartbeat_rule_fires_when_stale_or_never_and_not_when_fresh():
    assert alerts.alert_worker_heartbeat(now=timezone.now()).subject == "No worker heartbeat has ever been recorded"
    beat(9)
    assert alerts.alert_worker_heartbeat(now=timezone.now()) is None
    beat(25)
    alert = alerts.alert_worker_heartbeat(now=timezone.now())
    assert alert.kind == "worker_heartbeat" and alert.subject == "Worker heartbeat is 25 minutes old"


def test_heartbeat_runs_every_minute_from_beat_and_expires_when_late(beat_schedule):
    task = beat_schedule.get(task="webmagic.tasks.heartbeat")
    assert task.enabled and (task.interval.every, task.interval.period) == (1, "minutes")
    assert task.expire_seconds == 60
    migration = importlib.import_module("webmagic.migrations.0008_heartbeat_periodic_task")
    migration.create_task(django_apps, None)  # idempotent
    assert PeriodicTask.objects.filter(task="webmagic.tasks.heartbeat").count() == 1
    alerts_task = beat_schedule.get(task="webmagic.tasks.check_alerts")
    assert "queue" not in alerts_task.description  # the queue-length rule is gone


@pytest.fixture
def hook(settings):
    settings.ALERT_WEBHOOK_URL = HOOK
    with responses_lib.RequestsMock() as mock:
        mock.add(responses_lib.POST, HOOK, json={"ok": True})
        yield mock


def test_a_stale_heartbeat_seen_by_healthz_is_alerted_directly_once_an_hour(client, hook, django_capture_on_commit_callbacks):
    beat(15)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.get("/healthz/")
    assert response.status_code == 503 and response.json()["worker"] == "stale"
    # Direct: the email went inside the callback itself, with no Celery task behind it.
    assert len(callbacks) == 1 and len(mail.outbox) == 1
    assert mail.outbox[0].subject == "[WebMagic alert] Worker heartbeat is 15 minutes old"
    (log,) = EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT)
    assert log.status == EmailLog.Status.SENT
    assert len(hook.calls) == 1
    alert = StaffAlert.objects.get()
    assert alert.direct and alert.emailed and alert.webhook_posted

    with django_capture_on_commit_callbacks(execute=True):
        assert client.get("/healthz/").status_code == 503
    assert len(mail.outbox) == 1 and len(hook.calls) == 1 and StaffAlert.objects.count() == 1


def test_an_unhealthy_healthz_does_not_mail_admins_on_every_poll(client, settings, caplog):
    """Django mails ADMINS for every logged 5xx; the hourly alert is the one message staff get."""
    settings.DEBUG = False
    settings.ADMINS = [("Staff", "alerts@webmagic.test")]
    StaffAlert.objects.create(kind="worker_heartbeat", sequence=1, subject="s", body="b", fired_at=timezone.now())
    beat(15)
    for _ in range(3):
        assert client.get("/healthz/").status_code == 503
    assert mail.outbox == []
    assert "healthz: unhealthy worker=stale" in caplog.text


def test_a_fresh_heartbeat_alerts_nothing_from_healthz(client, django_capture_on_commit_callbacks):
    beat(1)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert client.get("/healthz/").json()["worker"] == "ok"
    assert callbacks == [] and mail.outbox == []


def test_healthz_answers_even_when_the_alert_cannot_be_raised(client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(alerts, "alert_heartbeat_raise", broken)
    beat(15)
    response = client.get("/healthz/")
    assert response.status_code == 503 and response.json()["worker"] == "stale"


def test_check_alerts_command_alerts_a_stale_heartbeat_directly(django_capture_on_commit_callbacks):
    beat(15)
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("check_alerts", stdout=out)
    assert "webmagic.alerts.alert_worker_heartbeat: FIRED worker_heartbeat, delivered" in out.getvalue()
    assert len(mail.outbox) == 1 and StaffAlert.objects.get().direct
