"""PostgreSQL-only: two alert checks running at once deliver an alert once."""

import threading
from datetime import timedelta

import pytest
import responses as responses_lib
from django.core import mail
from django.db import connections
from django.utils import timezone

from webhooks.models import WebhookEvent
from webmagic import alerts
from webmagic.models import EmailLog, Heartbeat, StaffAlert

pytestmark = pytest.mark.postgres

HOOK = "https://chat.example.test/hooks/T0KEN"


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_checks_deliver_an_alert_once(settings, monkeypatch):
    settings.ALERT_WEBHOOK_URL = HOOK
    Heartbeat.objects.create(name="worker", beat_at=timezone.now())
    at = timezone.now() - timedelta(minutes=1)
    for i in range(6):
        WebhookEvent.objects.create(
            delivery_id=f"msg_{i}", event_type="payment_intent.succeeded", raw_body="{}", payload={},
            status=WebhookEvent.Status.FAILED, processing_started_at=at, attempts=1, error="boom",
        )
    # Both runs read "no alert yet" before either claims, so the database constraint must decide.
    both_read = threading.Barrier(2, timeout=30)
    read = alerts._alert_latest

    def read_together(**kwargs):
        latest = read(**kwargs)
        if kwargs["kind"] == "failed_webhooks":
            both_read.wait()
        return latest

    monkeypatch.setattr(alerts, "_alert_latest", read_together)
    results, errors = [], []

    def run():
        try:
            results.extend(r for r in alerts.alerts_check() if r.fired)
        except Exception as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    with responses_lib.RequestsMock() as hook:
        hook.add(responses_lib.POST, HOOK, json={"ok": True})
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert len(hook.calls) == 1

    assert not any(r.error for r in results), results
    assert sorted((r.alert.kind, r.delivered) for r in results) == [("failed_webhooks", False), ("failed_webhooks", True)]
    assert StaffAlert.objects.filter(kind="failed_webhooks").count() == 1
    assert EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT).count() == 1
    assert len(mail.outbox) == 1
