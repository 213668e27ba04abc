import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from checkout.models import Payment
from sites.models import Site
from webhooks import handlers, services
from webhooks.models import WebhookEvent
from webmagic.models import EmailLog

from .helpers import payment_event

pytestmark = pytest.mark.django_db


def make_event(payload=None, *, status=WebhookEvent.Status.RECEIVED, age=timedelta(0), **fields) -> WebhookEvent:
    payload = payload or {"event_type": "something.new", "id": "xx_1"}
    event = WebhookEvent.objects.create(
        delivery_id=f"msg_{uuid.uuid4().hex}", event_type=payload["event_type"], object_id=payload.get("id", ""),
        live_mode=payload.get("live_mode"), raw_body=json.dumps(payload), payload=payload, status=status, **fields,
    )
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - age)
    event.refresh_from_db()
    return event


def test_unknown_event_types_are_acknowledged_and_ignored(deliver):
    deliver({"event_type": "checkout.something_new", "id": "ch_1", "live_mode": False})
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED
    assert event.error == "no handler for checkout.something_new" and event.processed_at


def test_every_handled_type_is_in_the_one_table():
    assert {
        "payment_intent.succeeded", "intent.succeeded", "bank_transfer_intent.succeeded", "payment_intent.failed",
        "bank_transfer_intent.pending", "bank_transfer_intent.failed", "refund.create", "subscription.create",
        "subscription.past_due", "subscription.pause", "subscription.paused", "subscription.unpause",
        "subscription.reactivate", "subscription.cancel", "subscription.update", "subscription.unable_to_start",
    } == set(handlers.HANDLERS)


def test_a_handler_that_raises_is_retried_and_then_succeeds(purchase_session, deliver, retries_run_inline, monkeypatch):
    real = handlers.HANDLERS["payment_intent.succeeded"]
    calls = []

    def flaky(event):
        calls.append(event.pk)
        if len(calls) == 1:
            raise ConnectionError("database hiccup")
        return real(event)

    monkeypatch.setitem(handlers.HANDLERS, "payment_intent.succeeded", flaky)
    deliver(payment_event(session=purchase_session, payment_id="pa_flaky"))

    event = WebhookEvent.objects.get()
    assert len(calls) == 2
    assert event.status == WebhookEvent.Status.PROCESSED and event.attempts == 2 and event.error == ""
    assert Payment.objects.count() == 1
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.OWNED


def test_a_failure_is_recorded_with_its_error_and_a_retry_time(purchase_session, monkeypatch):
    def broken(event):
        raise RuntimeError("boom")

    monkeypatch.setitem(handlers.HANDLERS, "payment_intent.succeeded", broken)
    event = make_event(payment_event(session=purchase_session))
    with pytest.raises(services.WebhookEventFailed) as failure:
        services.webhook_event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED and event.attempts == 1
    assert event.error.startswith("RuntimeError: boom")
    assert failure.value.retry_in == 60
    assert timezone.now() + timedelta(seconds=50) < event.next_retry_at < timezone.now() + timedelta(seconds=70)


def test_backoff_grows_exponentially_and_is_capped():
    assert [services.retry_delay_seconds(n) for n in range(1, 6)] == [60, 120, 240, 480, 960]
    assert services.retry_delay_seconds(50) == services.RETRY_MAX_SECONDS


def test_a_handler_failure_rolls_back_its_partial_writes(purchase_session, monkeypatch):
    from checkout.services import payments

    def fail_after_fulfilment(*, site, session, payment, user):
        raise RuntimeError("email layer down")

    monkeypatch.setattr(payments, "_purchase_emails_queue", fail_after_fulfilment)
    event = make_event(payment_event(session=purchase_session, payment_id="pa_rollback"))
    with pytest.raises(services.WebhookEventFailed):
        services.webhook_event_process(event_id=event.pk)
    assert Payment.objects.count() == 0
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.PREVIEW


def test_an_event_is_processed_only_once(purchase_session, monkeypatch):
    event = make_event(payment_event(session=purchase_session, payment_id="pa_once"))
    calls = []
    real = handlers.HANDLERS["payment_intent.succeeded"]
    monkeypatch.setitem(handlers.HANDLERS, "payment_intent.succeeded", lambda e: calls.append(e.pk) or real(e))
    assert services.webhook_event_process(event_id=event.pk) == WebhookEvent.Status.PROCESSED
    assert services.webhook_event_process(event_id=event.pk) is None
    assert calls == [event.pk]


@pytest.mark.postgres  # row locks tell a live attempt from a dead one at once
def test_a_redelivered_task_takes_over_an_event_whose_worker_just_died(purchase_session):
    event = make_event(payment_event(session=purchase_session, payment_id="pa_died"))
    # Claimed two seconds ago, then SIGKILL: the processing transaction died with its lock.
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=WebhookEvent.Status.PROCESSING, processing_started_at=timezone.now() - timedelta(seconds=2), attempts=1
    )
    assert services.webhook_event_process(event_id=event.pk) == WebhookEvent.Status.PROCESSED
    event.refresh_from_db()
    assert event.attempts == 2 and Payment.objects.filter(recurrente_payment_id="pa_died").count() == 1


def test_without_row_locks_an_event_claim_is_only_taken_over_when_stale(db, monkeypatch):
    from django.db import connection

    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    busy = make_event(status=WebhookEvent.Status.PROCESSING, processing_started_at=timezone.now() - timedelta(seconds=30))
    assert services.webhook_event_process(event_id=busy.pk) is None
    busy.refresh_from_db()
    assert busy.status == WebhookEvent.Status.PROCESSING and busy.attempts == 0
    stale = make_event(status=WebhookEvent.Status.PROCESSING, processing_started_at=timezone.now() - timedelta(minutes=30), attempts=1)
    assert services.webhook_event_process(event_id=stale.pk) == WebhookEvent.Status.IGNORED
    stale.refresh_from_db()
    assert stale.attempts == 2


@pytest.mark.postgres
def test_an_event_that_killed_its_worker_every_time_fails_and_alerts(db):
    event = make_event(
        status=WebhookEvent.Status.PROCESSING, processing_started_at=timezone.now() - timedelta(minutes=2),
        attempts=services.MAX_ATTEMPTS,
    )
    assert services.webhook_event_process(event_id=event.pk) is None
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED and event.next_retry_at is None
    assert "worker died during each of 8 attempts" in event.error
    assert EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT, subject__contains=f"Webhook event {event.pk}").exists()


def test_the_sweep_redrives_stuck_and_overdue_events_only(db):
    now = timezone.now()
    lost = make_event(age=timedelta(minutes=10))
    fresh = make_event(age=timedelta(seconds=5))
    dead_worker = make_event(
        status=WebhookEvent.Status.PROCESSING, processing_started_at=now - timedelta(minutes=20), age=timedelta(minutes=20)
    )
    busy = make_event(status=WebhookEvent.Status.PROCESSING, processing_started_at=now - timedelta(seconds=20), age=timedelta(minutes=1))
    overdue = make_event(status=WebhookEvent.Status.FAILED, next_retry_at=now - timedelta(minutes=10), age=timedelta(hours=1))
    not_yet = make_event(status=WebhookEvent.Status.FAILED, next_retry_at=now + timedelta(minutes=10), age=timedelta(hours=1))
    given_up = make_event(status=WebhookEvent.Status.FAILED, next_retry_at=None, age=timedelta(hours=1))
    done = make_event(status=WebhookEvent.Status.PROCESSED, age=timedelta(hours=1))

    assert set(services.webhook_events_due()) == {lost.pk, dead_worker.pk, overdue.pk}

    from webhooks.tasks import sweep_unprocessed_webhooks

    assert sweep_unprocessed_webhooks.delay().get() == 3
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert statuses[lost.pk] == statuses[dead_worker.pk] == statuses[overdue.pk] == WebhookEvent.Status.IGNORED
    assert statuses[fresh.pk] == WebhookEvent.Status.RECEIVED
    assert statuses[busy.pk] == WebhookEvent.Status.PROCESSING
    assert statuses[not_yet.pk] == statuses[given_up.pk] == WebhookEvent.Status.FAILED
    assert statuses[done.pk] == WebhookEvent.Status.PROCESSED


def test_the_sweep_is_scheduled_every_five_minutes_by_a_migration(db):
    from importlib import import_module

    from django.apps import apps

    # Run the data migration's function itself: transaction=True tests elsewhere flush the
    # rows migrations created, so the test database may no longer hold them.
    migration = import_module("webhooks.migrations.0003_sweep_periodic_task")
    PeriodicTask.objects.filter(name=migration.TASK_NAME).delete()
    migration.create_sweep(apps, None)
    migration.create_sweep(apps, None)  # idempotent
    task = PeriodicTask.objects.get(task="webhooks.tasks.sweep_unprocessed_webhooks")
    assert task.enabled and (task.interval.every, task.interval.period) == (5, "minutes")


def test_a_malformed_payload_fails_once_and_alerts_staff(purchase_session):
    payload = payment_event(session=purchase_session)
    del payload["payment"], payload["checkout"]["payment"], payload["id"]
    event = make_event(payload)
    with pytest.raises(services.WebhookEventFailed) as failure:
        services.webhook_event_process(event_id=event.pk)
    assert failure.value.retry_in is None
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED and "payment id" in event.error and event.next_retry_at is None
    alert = EmailLog.objects.get(kind=EmailLog.Kind.STAFF_ALERT)
    assert f"event {event.pk}" in alert.subject


def test_reprocess_command_runs_failed_events_again(purchase_session, monkeypatch):
    failed = make_event(
        payment_event(session=purchase_session, payment_id="pa_again"), status=WebhookEvent.Status.FAILED, attempts=8, error="boom"
    )
    ignored = make_event(status=WebhookEvent.Status.IGNORED)
    processed = make_event(status=WebhookEvent.Status.PROCESSED)
    from io import StringIO

    out = StringIO()
    call_command("reprocess_webhooks", "--now", stdout=out)
    assert "Reprocessed 1 event(s): 1 processed" in out.getvalue()
    failed.refresh_from_db()
    assert failed.status == WebhookEvent.Status.PROCESSED and failed.attempts == 9
    assert Payment.objects.filter(recurrente_payment_id="pa_again").exists()
    assert WebhookEvent.objects.get(pk=ignored.pk).status == WebhookEvent.Status.IGNORED
    assert WebhookEvent.objects.get(pk=processed.pk).status == WebhookEvent.Status.PROCESSED


def test_reprocess_command_queues_chosen_ids_including_ignored(db, django_capture_on_commit_callbacks):
    ignored = make_event(status=WebhookEvent.Status.IGNORED)
    from io import StringIO

    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("reprocess_webhooks", str(ignored.pk), "--include-ignored", stdout=out)
    assert "Queued 1 event(s)" in out.getvalue() and len(callbacks) == 1
    ignored.refresh_from_db()
    assert ignored.status == WebhookEvent.Status.IGNORED and ignored.attempts == 1  # ran again; still no handler


def test_reprocess_command_refuses_ids_that_are_not_failed(db):
    from django.core.management.base import CommandError

    processed = make_event(status=WebhookEvent.Status.PROCESSED)
    with pytest.raises(CommandError):
        call_command("reprocess_webhooks", str(processed.pk))


def test_admin_reprocess_action(staff_client, purchase_session, django_capture_on_commit_callbacks):
    failed = make_event(payment_event(session=purchase_session, payment_id="pa_admin"), status=WebhookEvent.Status.FAILED, attempts=3)
    processed = make_event(status=WebhookEvent.Status.PROCESSED)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/webhooks/webhookevent/",
            {"action": "reprocess", "_selected_action": [failed.pk, processed.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert "Queued 1 event(s)" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == WebhookEvent.Status.PROCESSED
    assert Site.objects.get(pk=purchase_session.site_id).owner.email == "maria.lopez@example.com"


def test_admin_event_page_shows_the_payload(staff_client, db):
    event = make_event({"event_type": "refund.create", "id": "re_1", "note": "<b>x</b>"})
    response = staff_client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "re_1" in body and "&lt;b&gt;x&lt;/b&gt;" in body
