"""Races that only a real database with row locks can show (PostgreSQL)."""

from collections import Counter
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from checkout.models import Payment
from checkout.tests.factories import CheckoutSessionFactory
from customers.models import CustomerUser
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks import handlers, services
from webhooks.models import WebhookEvent
from webmagic.models import EmailLog
from webmagic.tests.concurrency import run_together

from .helpers import event_body, payment_event, post_event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def deliver_job(payload, msg_id, body=None):
    body = body or event_body(payload)
    return lambda: post_event(Client(), payload, msg_id=msg_id, body=body).status_code


@pytest.fixture
def session():
    site = SiteFactory(business_name="LA Plumbing Pros", slug="la-plumbing-pros")
    return CheckoutSessionFactory(site=site, customer_email="maria.lopez@example.com", customer_name="María López")


def test_the_same_delivery_ten_times_at_once_gives_one_of_everything(session):
    payload = payment_event(session=session, payment_id="pa_race")
    body = event_body(payload)  # byte-identical retries, as Svix sends them
    statuses = run_together([deliver_job(payload, "msg_race", body) for _ in range(10)])

    assert statuses == [200] * 10
    assert WebhookEvent.objects.count() == 1
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    assert Payment.objects.count() == 1
    assert CustomerUser.objects.count() == 1
    site = Site.objects.get(pk=session.site_id)
    assert site.status == Site.Status.OWNED and site.owner.email == "maria.lopez@example.com"
    assert EmailLog.objects.filter(kind=EmailLog.Kind.WELCOME).count() == 1
    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECEIPT).count() == 1
    assert Counter(m.subject.split(":")[0] for m in mail.outbox if m.to == ["maria.lopez@example.com"]) == {
        "LA Plumbing Pros is yours — set your password": 1, "Your receipt": 1,
    }


def test_legacy_and_unified_events_at_once_give_one_payment(session):
    legacy = payment_event("payment_intent.succeeded.purchase.json", session=session, payment_id="pa_pair")
    unified = payment_event("intent.succeeded.purchase.json", session=session, payment_id="pa_pair")
    jobs = [deliver_job(legacy, f"msg_legacy_{i}") for i in range(4)] + [deliver_job(unified, f"msg_unified_{i}") for i in range(4)]
    assert run_together(jobs) == [200] * 8

    assert WebhookEvent.objects.count() == 8
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}
    assert Payment.objects.count() == 1
    assert Payment.objects.get().flag == ""
    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECEIPT).count() == 1


def test_two_buyers_paying_for_one_site_at_once_give_one_owner(session):
    rival = CheckoutSessionFactory(site=session.site, customer_email="rival@example.com")
    jobs = [
        deliver_job(payment_event(session=session, payment_id="pa_one"), "msg_one"),
        deliver_job(payment_event(session=rival, payment_id="pa_two"), "msg_two"),
    ]
    assert run_together(jobs) == [200, 200]

    site = Site.objects.get(pk=session.site_id)
    flags = sorted(Payment.objects.values_list("flag", flat=True))
    assert flags == ["", Payment.Flag.NEEDS_REFUND]
    winner = Payment.objects.get(flag="")
    assert site.owner == winner.user and site.purchase_transaction_id == winner.recurrente_payment_id
    assert EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT, subject__startswith="Refund needed").count() == 1


def test_one_email_buying_two_sites_at_once_gets_one_account(db):
    first = CheckoutSessionFactory(customer_email="same@example.com")
    second = CheckoutSessionFactory(customer_email="Same@Example.com")
    jobs = [
        deliver_job(payment_event(session=first, payment_id="pa_s1"), "msg_s1"),
        deliver_job(payment_event(session=second, payment_id="pa_s2"), "msg_s2"),
    ]
    assert run_together(jobs) == [200, 200]
    user = CustomerUser.objects.get()
    assert Site.objects.filter(owner=user).count() == 2
    assert EmailLog.objects.filter(kind=EmailLog.Kind.WELCOME).count() == 1


def test_workers_racing_for_one_event_run_its_handler_once(session, monkeypatch):
    event_id = None

    def store():
        nonlocal event_id
        response = post_event(Client(), payment_event(session=session, payment_id="pa_claim"), msg_id="msg_claim")
        assert response.status_code == 200

    # Store without running it, so the workers below find it `received`.
    monkeypatch.setattr("webhooks.services._enqueue_after_commit", lambda event_id: None)
    store()
    event_id = WebhookEvent.objects.get().pk
    calls = []
    real = handlers.HANDLERS["payment_intent.succeeded"]

    def counting(event):
        calls.append(event.pk)
        return real(event)

    monkeypatch.setitem(handlers.HANDLERS, "payment_intent.succeeded", counting)
    results = run_together([lambda: services.webhook_event_process(event_id=event_id) for _ in range(8)])
    assert calls == [event_id]
    assert Counter(results) == {None: 7, WebhookEvent.Status.PROCESSED: 1}
    assert Payment.objects.count() == 1


def test_a_live_processing_attempt_is_never_taken_over(session, monkeypatch):
    """A redelivered task and the sweep arrive while a slow handler runs: the event's row is
    locked by the live attempt, so neither takes it over and the handler runs once."""
    import threading

    from webhooks.tasks import sweep_unprocessed_webhooks

    monkeypatch.setattr("webhooks.services._enqueue_after_commit", lambda event_id: None)
    assert post_event(Client(), payment_event(session=session, payment_id="pa_slow"), msg_id="msg_slow").status_code == 200
    event_id = WebhookEvent.objects.get().pk
    inside, release = threading.Event(), threading.Event()
    calls = []
    real = handlers.HANDLERS["payment_intent.succeeded"]

    def slow(event):
        calls.append(event.pk)
        inside.set()
        assert release.wait(20)
        return real(event)

    monkeypatch.setitem(handlers.HANDLERS, "payment_intent.succeeded", slow)

    def latecomers():
        try:
            assert inside.wait(20)
            redelivered = services.webhook_event_process(event_id=event_id)
            # The sweep, looking 5 minutes on, sees a `processing` row it would re-drive...
            swept = services.webhook_events_due(now=timezone.now() + timedelta(minutes=5))
        finally:
            release.set()
        return redelivered, swept

    results = run_together([lambda: services.webhook_event_process(event_id=event_id), latecomers])
    redelivered, swept = results[1]
    assert results[0] == WebhookEvent.Status.PROCESSED and redelivered is None
    assert swept == [event_id]  # the sweep may enqueue it; its task's claim skips the locked row
    assert calls == [event_id] and Payment.objects.count() == 1
    assert sweep_unprocessed_webhooks() == 0  # done: nothing left to re-drive
    assert WebhookEvent.objects.get().attempts == 1
