"""Fault tests, end to end: a real purchase delivery survives a worker dying mid-processing and a
broker that is down when it arrives; each is processed exactly once afterwards."""

from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from freezegun import freeze_time

from checkout.models import Payment
from sites.models import Site
from webhooks import services, tasks
from webhooks.models import WebhookEvent

from .helpers import payment_event, post_event

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler code catches it."""


def test_worker_killed_during_processing_is_processed_once_later(client, purchase_session, django_capture_on_commit_callbacks):
    real_record = services.handlers.HANDLERS["payment_intent.succeeded"]

    def die_midway(event):
        real_record(event)  # the handler's writes happen inside the processing transaction…
        raise WorkerKilled  # …and the worker dies before it commits

    with mock.patch.dict(services.handlers.HANDLERS, {"payment_intent.succeeded": die_midway}):
        with pytest.raises(WorkerKilled), django_capture_on_commit_callbacks(execute=True):
            post_event(client, payment_event(session=purchase_session))
    event = WebhookEvent.objects.get()
    # Nothing half-written: the transaction rolled back with the dead worker.
    assert Payment.objects.count() == 0
    assert Site.objects.get().status == Site.Status.PREVIEW

    with freeze_time(event.received_at + timedelta(minutes=11)), django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_unprocessed_webhooks() >= 1
        assert tasks.sweep_unprocessed_webhooks() == 0  # once is enough
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Payment.objects.count() == 1
    site = Site.objects.get()
    assert site.status == Site.Status.OWNED and site.owner.email == "maria.lopez@example.com"
    assert len([m for m in mail.outbox if m.to == ["maria.lopez@example.com"] and "set-password" in m.body]) == 1


def test_broker_down_while_a_webhook_arrives_is_stored_then_processed_by_the_sweep(
    client, purchase_session, django_capture_on_commit_callbacks
):
    with mock.patch.object(tasks.process_webhook_event, "delay", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_event(client, payment_event(session=purchase_session))
    assert response.status_code == 200  # acknowledged: Recurrente must not keep retrying
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED and Payment.objects.count() == 0

    with freeze_time(event.received_at + timedelta(minutes=3)), django_capture_on_commit_callbacks(execute=True):
        tasks.sweep_unprocessed_webhooks()
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED and event.attempts == 1
    assert Payment.objects.count() == 1 and Site.objects.get().status == Site.Status.OWNED


def test_the_buyer_who_loses_the_race_for_a_site_is_not_told_it_is_theirs(client, purchase_session, deliver):
    from checkout.tests.factories import CheckoutSessionFactory

    rival = CheckoutSessionFactory(site=purchase_session.site, customer_email="rival@example.com")
    deliver(payment_event(session=purchase_session, payment_id="pa_first"))
    deliver(payment_event(session=rival, payment_id="pa_second"))
    assert Site.objects.get().owner.email == "maria.lopez@example.com"
    assert Payment.objects.get(recurrente_payment_id="pa_second").flag == Payment.Flag.NEEDS_REFUND
    assert client.get(f"/checkout/success/status/?session={purchase_session.pk}").json() == {"state": "confirmed"}
    assert client.get(f"/checkout/success/status/?session={rival.pk}").json() == {"state": "refund"}
