"""Reconciliation with Recurrente (DESIGN §8): open checkouts asked about on a back-off, paid ones
recorded through the webhook's own path, faults that leave everything as it was, live
subscriptions read daily, and whole flows completing with no webhook at all."""

import importlib
import json
import re
from datetime import timedelta
from io import StringIO

import pytest
import requests
import responses as responses_lib
from django.apps import apps
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from freezegun import freeze_time

from checkout.models import CheckoutSession, Payment, ReconcileRun, Subscription
from checkout.services import reconcile
from checkout.services.purchase import RequestContext, purchase_start
from checkout.tests.factories import CheckoutSessionFactory, SubscriptionFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks.models import WebhookEvent
from webhooks.tests.helpers import payment_event, post_event, subscription_event
from webmagic.models import EmailLog, StaffAlert
from webmagic.tests.concurrency import run_together

from .conftest import API

pytestmark = pytest.mark.django_db


def due_session(*, minutes_ago=3, **kwargs) -> CheckoutSession:
    """An open checkout created `minutes_ago`, whose next look is due now."""
    now = timezone.now()
    created = now - timedelta(minutes=minutes_ago)
    session = CheckoutSessionFactory(checkout_created_at=created, next_reconcile_at=now - timedelta(seconds=1), **kwargs)
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=created)
    session.refresh_from_db()
    return session


def webhooks_missed(*, minutes_later: int):
    from webhooks.alerts import alert_payments_without_webhook

    return alert_payments_without_webhook(now=timezone.now() + timedelta(minutes=minutes_later))


def test_a_reconciled_payment_is_judged_once_an_hour_window(recurrente_checkouts, django_capture_on_commit_callbacks):
    session = due_session()
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    run_pass(django_capture_on_commit_callbacks)
    assert webhooks_missed(minutes_later=69) is not None
    assert webhooks_missed(minutes_later=71) is None  # judged in its hour; it does not alert for a day


def run_pass(capture, **kwargs):
    with capture(execute=True):
        return reconcile.reconcile_pass(**kwargs)


# --- Scheduling ----------------------------------------------------------------------------------

def test_a_new_checkout_is_first_looked_at_two_minutes_after_it_was_created(checkout_created, preview_site):
    session = purchase_start(site_id=preview_site.pk, full_name="María López", email="maria@example.com",
                             request_context=RequestContext(ip_address=None, user_agent="", referrer=""))
    assert session.next_reconcile_at == session.checkout_created_at + timedelta(minutes=2)


@pytest.mark.parametrize(("minutes_since_created", "next_in_minutes"), [
    (0, 2), (2, 5), (4, 5), (5, 15), (15, 60), (60, 120), (61, 121), (300, 360),
])
def test_the_back_off_is_2_5_15_60_minutes_then_hourly(minutes_since_created, next_in_minutes):
    start = timezone.now().replace(microsecond=0)
    session = CheckoutSession(checkout_created_at=start, created_at=start)
    now = start + timedelta(minutes=minutes_since_created)
    assert reconcile.checkout_next_check(session=session, now=now) == start + timedelta(minutes=next_in_minutes)


@override_settings(CHECKOUT_LIFETIME_HOURS=24)
def test_a_checkout_is_looked_at_once_just_after_it_expires_and_then_never():
    start = timezone.now().replace(microsecond=0)
    session = CheckoutSession(checkout_created_at=start, created_at=start)
    ends = start + timedelta(hours=24, minutes=15)
    assert reconcile.checkout_next_check(session=session, now=ends - timedelta(minutes=20)) == ends
    assert reconcile.checkout_next_check(session=session, now=ends) is None
    # A bank transfer in progress keeps it open two more days.
    session.payment_in_progress_at = start + timedelta(hours=23)
    assert reconcile.checkout_next_check(session=session, now=ends) == ends + timedelta(hours=1)


def test_a_pass_asks_only_about_open_checkouts_that_are_due(recurrente_checkouts, django_capture_on_commit_callbacks):
    due = due_session()
    reminded = due_session(status=CheckoutSession.Status.ABANDONED)  # whatever its reminder state
    later = due_session()
    CheckoutSession.objects.filter(pk=later.pk).update(next_reconcile_at=timezone.now() + timedelta(minutes=1))
    due_session(status=CheckoutSession.Status.COMPLETED)
    due_session(status=CheckoutSession.Status.EXPIRED)
    CheckoutSessionFactory()  # created before reconciliation existed in this test: never scheduled
    report = run_pass(django_capture_on_commit_callbacks)
    assert sorted(recurrente_checkouts["_seen"]) == sorted([due.recurrente_checkout_id, reminded.recurrente_checkout_id])
    assert report.run.checkouts_checked == 2 and report.results == {"unpaid": 2}
    due.refresh_from_db()
    assert due.reconcile_checks == 1 and due.status == CheckoutSession.Status.CHECKOUT_CREATED
    assert due.next_reconcile_at == due.checkout_created_at + timedelta(minutes=5)  # the next step of the back-off
    # Nothing is due again until then.
    run_pass(django_capture_on_commit_callbacks)
    assert len(recurrente_checkouts["_seen"]) == 2


def test_a_pass_is_bounded_and_the_rest_waits_for_the_next(recurrente_checkouts, django_capture_on_commit_callbacks):
    sessions = [due_session() for _ in range(5)]
    report = run_pass(django_capture_on_commit_callbacks, checkout_batch=3)
    assert report.run.checkouts_checked == 3 and report.run.left_for_next_run == 2
    report = run_pass(django_capture_on_commit_callbacks, checkout_batch=3)
    assert report.run.checkouts_checked == 2
    assert sorted(recurrente_checkouts["_seen"]) == sorted(s.recurrente_checkout_id for s in sessions)


def test_a_pass_stops_when_its_time_budget_is_used(recurrente_checkouts, django_capture_on_commit_callbacks):
    for _ in range(3):
        due_session()
    report = run_pass(django_capture_on_commit_callbacks, budget_seconds=-1)
    assert report.run.checkouts_checked == 0 and report.run.left_for_next_run == 3
    assert report.run.stopped_early == "time budget used up"


# --- Paid checkouts ------------------------------------------------------------------------------

def test_a_paid_checkout_no_webhook_announced_is_fulfilled_once_and_staff_are_told(
    recurrente_checkouts, django_capture_on_commit_callbacks, client
):
    site = SiteFactory(business_name="LA Plumbing Pros")
    session = due_session(site=site, customer_email="maria.lopez@example.com", customer_name="María López")
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    report = run_pass(django_capture_on_commit_callbacks)

    assert report.run.payments_found == 1 and "recorded now" in report.run.findings
    site.refresh_from_db()
    session.refresh_from_db()
    payment = Payment.objects.get()
    assert site.status == Site.Status.OWNED and site.owner.email == "maria.lopez@example.com"
    assert session.status == CheckoutSession.Status.COMPLETED and session.next_reconcile_at is None
    assert payment.recurrente_payment_id == f"pa_{session.recurrente_checkout_id[3:]}" and payment.amount == 495
    assert payment.recurrente_intent_id == f"in_{session.recurrente_checkout_id[3:]}" and payment.card_last4 == "4242"
    # The same emails as the webhook path, and "webhooks look broken" for staff once no webhook
    # has followed for ten minutes (not at once: the webhook is often just a moment behind).
    assert sorted(EmailLog.objects.exclude(kind=EmailLog.Kind.STAFF_ALERT).values_list("kind", flat=True)) == ["receipt", "welcome"]
    assert payment.recorded_from == Payment.Source.RECONCILIATION
    assert webhooks_missed(minutes_later=9) is None
    assert payment.recurrente_payment_id in webhooks_missed(minutes_later=11).body
    sent = len(mail.outbox)

    # The webhook, arriving late, is a no-op, and the payment no longer counts as missed.
    payload = payment_event(session=session, payment_id=payment.recurrente_payment_id)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, payload).status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    assert Payment.objects.count() == 1 and len(mail.outbox) == sent
    assert webhooks_missed(minutes_later=11) is None


def test_a_paid_checkout_a_webhook_already_recorded_raises_no_alert(recurrente_checkouts, django_capture_on_commit_callbacks, client):
    session = due_session(customer_email="maria.lopez@example.com")
    payload = payment_event(session=session, payment_id=f"pa_{session.recurrente_checkout_id[3:]}")
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, payload)
    CheckoutSession.objects.filter(pk=session.pk).update(status=CheckoutSession.Status.CHECKOUT_CREATED)  # not yet seen
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    report = run_pass(django_capture_on_commit_callbacks)
    assert report.results == {"already_recorded": 1} and report.run.payments_found == 0
    assert Payment.objects.get().recorded_from == Payment.Source.WEBHOOK
    assert webhooks_missed(minutes_later=11) is None


def test_a_paid_checkout_for_a_site_sold_meanwhile_is_flagged_for_refund(recurrente_checkouts, django_capture_on_commit_callbacks):
    site = SiteFactory(status=Site.Status.OWNED, owner=CustomerFactory())
    session = due_session(site=site)
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    run_pass(django_capture_on_commit_callbacks)
    payment = Payment.objects.get()
    assert payment.flag == Payment.Flag.NEEDS_REFUND
    assert EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT, subject__startswith="Refund needed").exists()


def test_a_wrong_amount_found_by_reconciliation_is_flagged_not_fulfilled(recurrente_checkouts, django_capture_on_commit_callbacks):
    session = due_session(amount="445.50")  # a recovery checkout at 10 % off, but Recurrente says 495 was paid
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    run_pass(django_capture_on_commit_callbacks)
    assert Payment.objects.get().flag == Payment.Flag.AMOUNT_MISMATCH
    assert Site.objects.get(pk=session.site_id).status == Site.Status.PREVIEW


def test_a_bank_transfer_in_progress_is_marked_and_cleared_when_the_checkout_is_payable_again(
    recurrente_checkouts, django_capture_on_commit_callbacks
):
    session = due_session()
    recurrente_checkouts[session.recurrente_checkout_id] = "payment_in_progress"
    assert run_pass(django_capture_on_commit_callbacks).results == {"in_progress": 1}
    session.refresh_from_db()
    assert session.payment_in_progress_at is not None and session.next_reconcile_at is not None
    recurrente_checkouts[session.recurrente_checkout_id] = "unpaid"
    CheckoutSession.objects.filter(pk=session.pk).update(next_reconcile_at=timezone.now())
    run_pass(django_capture_on_commit_callbacks)
    session.refresh_from_db()
    assert session.payment_in_progress_at is None and "bank transfer" in session.last_failure_reason


@pytest.mark.parametrize(("answer", "result"), [("expired", "expired"), (404, "unknown_at_recurrente")])
def test_an_expired_or_unknown_checkout_is_no_longer_asked_about(answer, result, recurrente_checkouts, django_capture_on_commit_callbacks):
    session = due_session()
    recurrente_checkouts[session.recurrente_checkout_id] = answer
    assert run_pass(django_capture_on_commit_callbacks).results == {result: 1}
    session.refresh_from_db()
    assert session.next_reconcile_at is None and session.status == CheckoutSession.Status.CHECKOUT_CREATED


# --- Faults --------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    500, 502, requests.exceptions.ConnectTimeout(), requests.exceptions.ReadTimeout(), b"<html>not json</html>",
    "refunded_maybe",  # a status we do not know
    "paid_without_payment",
], ids=["500", "502", "connect-timeout", "read-timeout", "not-json", "unknown-status", "paid-without-payment-id"])
def test_a_failed_or_odd_answer_changes_nothing_and_the_others_go_on(
    answer, recurrente_checkouts, django_capture_on_commit_callbacks, recurrente_api
):
    broken, fine = due_session(), due_session()
    if answer == "paid_without_payment":
        body = recurrente_fixture("api/get_checkout.paid.response.json")
        body["id"], body["payment"] = broken.recurrente_checkout_id, None
        answer = json.dumps(body).encode()
    recurrente_checkouts[broken.recurrente_checkout_id] = answer
    recurrente_checkouts[fine.recurrente_checkout_id] = "paid"
    before = timezone.now()
    report = run_pass(django_capture_on_commit_callbacks)

    broken.refresh_from_db()
    assert broken.status == CheckoutSession.Status.CHECKOUT_CREATED and broken.payment_in_progress_at is None
    # Asked again soon: at its next scheduled look (2 minutes on) or within 5 minutes, whichever is first.
    assert before < broken.next_reconcile_at <= timezone.now() + timedelta(minutes=5)
    assert Payment.objects.get().checkout_session_id == fine.pk  # the one behind it was still recorded
    assert report.run.errors == 1 and not report.run.stopped_early


@pytest.mark.parametrize("answer", [503, "refunded_maybe"])
def test_a_checkout_recurrente_keeps_failing_on_is_not_asked_about_after_it_expires(
    answer, recurrente_checkouts, django_capture_on_commit_callbacks
):
    session = due_session(minutes_ago=60 * 24 * 10)  # ten days old: long past its lifetime
    recurrente_checkouts[session.recurrente_checkout_id] = answer
    run_pass(django_capture_on_commit_callbacks)
    session.refresh_from_db()
    assert session.next_reconcile_at is None


def test_an_unexpected_error_on_one_session_does_not_stop_the_pass(
    recurrente_checkouts, subscriptions_api, django_capture_on_commit_callbacks, monkeypatch
):
    broken, fine = due_session(minutes_ago=10), due_session(minutes_ago=5)
    real = reconcile.checkout_session_reconcile

    def flaky(*, session_id, now):
        if session_id == broken.pk:
            raise RuntimeError("boom")
        return real(session_id=session_id, now=now)

    monkeypatch.setattr(reconcile, "checkout_session_reconcile", flaky)
    subscription = live_subscription()
    report = run_pass(django_capture_on_commit_callbacks)
    assert report.run.errors == 1 and report.results == {"error": 1, "unpaid": 1}
    assert report.run.subscriptions_checked == 1  # the rest of the pass still ran
    assert subscriptions_api["_seen"] == [subscription.recurrente_subscription_id]
    assert recurrente_checkouts["_seen"] == [fine.recurrente_checkout_id]  # the one behind it was asked


@pytest.mark.parametrize(("status", "reason"), [(429, "slow down"), (401, "API key")])
def test_a_rate_limit_or_a_bad_key_stops_the_pass_and_tells_staff(status, reason, recurrente_checkouts, django_capture_on_commit_callbacks):
    first, second = due_session(minutes_ago=10), due_session(minutes_ago=5)
    recurrente_checkouts[first.recurrente_checkout_id] = status
    report = run_pass(django_capture_on_commit_callbacks)
    assert reason in report.run.stopped_early
    assert recurrente_checkouts["_seen"] == [first.recurrente_checkout_id]  # the second was not asked
    first.refresh_from_db()
    assert first.next_reconcile_at > timezone.now() and first.reconcile_checks == 0
    second.refresh_from_db()
    assert second.next_reconcile_at < timezone.now() and second.reconcile_checks == 0  # still due next pass
    assert StaffAlert.objects.filter(kind="reconcile_stopped").count() == 1


def test_a_pass_that_died_mid_call_leaves_the_session_due_again_after_the_lease(recurrente_checkouts, django_capture_on_commit_callbacks):
    session = due_session()
    with freeze_time(timezone.now()):
        # The claim is taken, then the worker dies before it records anything.
        assert CheckoutSession.objects.filter(pk=session.pk).update(next_reconcile_at=timezone.now() + reconcile.CLAIM_LEASE)
        assert reconcile.reconcile_due_sessions(now=timezone.now(), limit=10) == []
    later = timezone.now() + reconcile.CLAIM_LEASE + timedelta(seconds=1)
    assert reconcile.reconcile_due_sessions(now=later, limit=10) == [session.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_payment_found_by_the_reconciler_and_a_webhook_at_once_is_recorded_once(recurrente_checkouts, client):
    """Both paths run at the same moment on PostgreSQL: one payment, one welcome, one receipt."""
    from webhooks import services as webhook_services

    site = SiteFactory()
    session = due_session(site=site, customer_email="maria.lopez@example.com")
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    payment_id = f"pa_{session.recurrente_checkout_id[3:]}"
    body = json.dumps(payment_event(session=session, payment_id=payment_id)).encode()
    from webhooks.tests.helpers import TEST_SECRET
    from webmagic.webhook_signing import signed_headers

    stored = webhook_services.webhook_delivery_accept(
        headers=signed_headers(secret=TEST_SECRET, msg_id="msg_race", body=body), body=body,
    )
    run_together([
        lambda: reconcile.checkout_session_reconcile(session_id=session.pk),
        lambda: webhook_services.webhook_event_process(event_id=stored.event_id),
    ])
    assert Payment.objects.filter(recurrente_payment_id=payment_id).count() == 1
    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECEIPT).count() == 1
    assert EmailLog.objects.filter(kind=EmailLog.Kind.WELCOME).count() == 1
    assert Site.objects.get(pk=site.pk).status == Site.Status.OWNED
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED


@pytest.mark.postgres
def test_the_due_query_reads_the_partial_index_of_open_sessions():
    due = reconcile.reconcile_due_queryset(now=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        plan = due.values_list("pk", flat=True)[:300].explain()
        leftover_plan = due.order_by().values("pk")[:10_000].explain()  # the pass's capped count
        cursor.execute("SET enable_seqscan = on")
    assert "checkout_reconcile_due_idx" in plan
    assert "checkout_reconcile_due_idx" in leftover_plan


# --- Subscriptions -------------------------------------------------------------------------------

@pytest.fixture
def subscriptions_api(recurrente_api):
    """GET /subscriptions/{id}: the fixture, with the status and updated_at a test sets."""
    answers: dict[str, dict] = {}
    seen: list[str] = []

    def get(request):
        subscription_id = request.url.rsplit("/", 1)[1]
        seen.append(subscription_id)
        answer = answers.get(subscription_id, {})
        if isinstance(answer, int):
            return answer, {}, json.dumps({"message": "error"})
        body = {**recurrente_fixture("api/get_subscription.response.json"), **answer, "id": subscription_id}
        return 200, {}, json.dumps(body)

    recurrente_api.add_callback(
        responses_lib.GET, re.compile(rf"{re.escape(API)}/subscriptions/\w+"), callback=get, content_type="application/json"
    )
    answers["_seen"] = seen
    return answers


def live_subscription(**kwargs) -> Subscription:
    owner = CustomerFactory()
    site = SiteFactory(status=Site.Status.ACTIVE, owner=owner)
    return SubscriptionFactory(site=site, user=owner, current_period_end=timezone.now() + timedelta(days=20), **kwargs)


def test_a_live_subscription_is_read_daily_and_a_missed_pause_is_applied(subscriptions_api, django_capture_on_commit_callbacks):
    subscription = live_subscription()
    updated = (timezone.now() - timedelta(hours=2)).isoformat()
    subscriptions_api[subscription.recurrente_subscription_id] = {"status": "paused", "updated_at": updated}
    report = run_pass(django_capture_on_commit_callbacks)

    subscription.refresh_from_db()
    assert report.run.subscriptions_checked == 1 and report.run.subscriptions_changed == 1
    assert subscription.status == Subscription.Status.PAUSED and subscription.last_reconciled_at is not None
    assert Site.objects.get(pk=subscription.site_id).status == Site.Status.SUSPENDED
    assert "active → paused" in report.run.findings
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED).count() == 1
    # Not asked again within the day.
    run_pass(django_capture_on_commit_callbacks)
    assert subscriptions_api["_seen"] == [subscription.recurrente_subscription_id]
    with freeze_time(timezone.now() + timedelta(hours=21)):
        run_pass(django_capture_on_commit_callbacks)
    assert len(subscriptions_api["_seen"]) == 2


def test_reconciled_state_is_never_overwritten_by_older_news_but_newer_news_applies(
    subscriptions_api, django_capture_on_commit_callbacks, client
):
    subscription = live_subscription(recurrente_subscription_id="su_9xk2p7qv")
    now = timezone.now()
    subscriptions_api["su_9xk2p7qv"] = {"status": "paused", "updated_at": (now - timedelta(minutes=10)).isoformat()}
    run_pass(django_capture_on_commit_callbacks)

    older = subscription_event("subscription.unpause.json", subscription_id="su_9xk2p7qv",
                               created_at=(now - timedelta(minutes=30)).isoformat())
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, older)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PAUSED  # the event is older than what Recurrente told us

    newer = subscription_event("subscription.unpause.json", subscription_id="su_9xk2p7qv",
                               created_at=(now - timedelta(minutes=1)).isoformat())
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, newer)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE


def test_without_updated_at_the_time_we_asked_protects_the_reconciled_state(
    subscriptions_api, django_capture_on_commit_callbacks, client
):
    subscription = live_subscription(recurrente_subscription_id="su_9xk2p7qv", status=Subscription.Status.PAUSED)
    Site.objects.filter(pk=subscription.site_id).update(status=Site.Status.SUSPENDED)
    subscriptions_api["su_9xk2p7qv"] = {"status": "active", "updated_at": None}  # the field is unverified
    run_pass(django_capture_on_commit_callbacks)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE and subscription.last_event_at is not None

    older = subscription_event("subscription.pause.json", subscription_id="su_9xk2p7qv",
                               created_at=(timezone.now() - timedelta(minutes=10)).isoformat())
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, older)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE  # news older than what we read


def test_a_subscription_recurrente_cannot_answer_for_is_asked_again_soon_and_the_others_go_on(
    subscriptions_api, django_capture_on_commit_callbacks
):
    broken, fine = live_subscription(), live_subscription()
    subscriptions_api[broken.recurrente_subscription_id] = 503
    subscriptions_api[fine.recurrente_subscription_id] = {"status": "past_due"}
    report = run_pass(django_capture_on_commit_callbacks)
    assert report.run.errors == 1
    broken.refresh_from_db()
    fine.refresh_from_db()
    assert broken.status == Subscription.Status.ACTIVE and fine.status == Subscription.Status.PAST_DUE
    with freeze_time(timezone.now() + reconcile.ERROR_RETRY + timedelta(seconds=5)):
        run_pass(django_capture_on_commit_callbacks)
    assert subscriptions_api["_seen"].count(broken.recurrente_subscription_id) == 2
    assert subscriptions_api["_seen"].count(fine.recurrente_subscription_id) == 1


def test_cancelled_subscriptions_are_not_asked_about(subscriptions_api, django_capture_on_commit_callbacks):
    live_subscription(status=Subscription.Status.CANCELLED)
    run_pass(django_capture_on_commit_callbacks)
    assert subscriptions_api["_seen"] == []


# --- The command, the success page's nudge, and flows with no webhook at all ---------------------

def test_the_command_runs_one_pass_and_prints_what_it_found(recurrente_checkouts):
    session = due_session()
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    out = StringIO()
    call_command("reconcile_recurrente", stdout=out)
    text = out.getvalue()
    assert "checkouts asked about: 1 (paid: 1)" in text
    assert "payments found that no webhook had recorded: 1" in text
    assert f"session {session.pk}: paid at Recurrente" in text
    assert ReconcileRun.objects.get().payments_found == 1


def test_the_success_page_asks_recurrente_at_most_every_15_seconds(recurrente_checkouts, client):
    session = due_session()
    CheckoutSession.objects.filter(pk=session.pk).update(next_reconcile_at=timezone.now() + timedelta(minutes=3))
    url = f"/checkout/success/status/?session={session.pk}"
    assert client.get(url).json() == {"state": "confirming"}
    assert client.get(url).json() == {"state": "confirming"}
    assert recurrente_checkouts["_seen"] == [session.recurrente_checkout_id]
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    with freeze_time(timezone.now() + timedelta(seconds=16)):
        client.get(url)  # asks Recurrente in the background (inline here); the next poll shows the answer
        assert client.get(url).json() == {"state": "confirmed"}
    assert len(recurrente_checkouts["_seen"]) == 2


def test_the_success_page_still_answers_when_the_broker_is_down(recurrente_checkouts, client, monkeypatch):
    from checkout import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.reconcile_checkout_session, "delay", broker_down)
    session = due_session()
    assert client.get(f"/checkout/success/status/?session={session.pk}").json() == {"state": "confirming"}
    assert client.get(f"/checkout/success/?session={session.pk}").status_code == 200


@override_settings(SANDBOX_WEBHOOKS=False)
def test_with_no_webhook_at_all_purchase_then_hosting_complete_through_reconciliation(
    client, django_capture_on_commit_callbacks
):
    """Test keys that send no webhooks: the sandbox with webhooks off. The buyer pays, lands on the
    success page, and the purchase completes; hosting the same way; then the periodic pass alone."""
    site = SiteFactory(slug="casa-verde-cafe", business_name="Casa Verde Café")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/sites/{site.slug}/purchase/", {"full_name": "María López", "email": "maria@example.com"})
    checkout_path = response["Location"].removeprefix("http://testserver")
    with django_capture_on_commit_callbacks(execute=True):
        paid = client.post(checkout_path, {"action": "pay"})
        success = paid["Location"].removeprefix("http://testserver")
        assert client.get(success).status_code == 200  # the page's own look at Recurrente (eager task here)
    assert WebhookEvent.objects.count() == 0
    site.refresh_from_db()
    assert site.status == Site.Status.OWNED and site.owner.email == "maria@example.com"
    assert client.get(success.replace("/success/", "/success/status/")).json() == {"state": "confirmed"}
    sent = EmailLog.objects.filter(status=EmailLog.Status.SENT, to_email="maria@example.com")
    assert sorted(sent.values_list("kind", flat=True)) == ["receipt", "welcome"]

    owner = site.owner
    owner.email_verified = True
    owner.save(update_fields=["email_verified"])
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        hosting = client.post(f"/portal/sites/{site.slug}/hosting/start/")
        returned = client.post(hosting["Location"].removeprefix("http://testserver"), {"action": "pay"})
        back = client.get(returned["Location"].removeprefix("http://testserver"))
    assert back.status_code == 303 and back["Location"].endswith("?subscription=started")
    site.refresh_from_db()
    assert site.status == Site.Status.ACTIVE and WebhookEvent.objects.count() == 0
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE


@override_settings(SANDBOX_WEBHOOKS=False)
def test_with_no_webhook_and_no_returning_buyer_one_reconcile_pass_completes_the_purchase(
    client, django_capture_on_commit_callbacks
):
    site = SiteFactory()
    response = client.post(f"/sites/{site.slug}/purchase/", {"full_name": "María López", "email": "maria@example.com"})
    client.post(response["Location"].removeprefix("http://testserver"), {"action": "pay"})  # and closes the tab
    session = CheckoutSession.objects.get()
    with freeze_time(session.checkout_created_at + timedelta(minutes=2, seconds=1)):
        report = run_pass(django_capture_on_commit_callbacks)
    assert report.run.payments_found == 1
    assert Site.objects.get(pk=site.pk).status == Site.Status.OWNED


# --- The schedule and the rows that existed before reconciliation ---------------------------------

def test_the_reconciler_runs_every_5_minutes_from_a_row_staff_can_edit(beat_schedule):
    task = beat_schedule.get(task="checkout.tasks.reconcile_recurrente")
    assert (task.interval.every, task.interval.period, task.enabled) == (5, "minutes", True)
    assert task.expire_seconds == 300  # a tick that waited longer is covered by the next one
    task.enabled = False
    task.save()
    migration = importlib.import_module("checkout.migrations.0007_reconcile_periodic_task")
    migration.forwards(apps, connection.schema_editor())  # re-running never duplicates or re-enables it
    assert beat_schedule.filter(task="checkout.tasks.reconcile_recurrente").count() == 1
    assert not beat_schedule.get(task="checkout.tasks.reconcile_recurrente").enabled


def test_open_checkouts_and_refunds_from_before_reconciliation_are_picked_up():
    from checkout.models import Refund
    from checkout.tests.factories import PaymentFactory

    migration = importlib.import_module("checkout.migrations.0007_reconcile_periodic_task")
    open_one = CheckoutSessionFactory()  # next_reconcile_at empty, as every session had before
    closed = CheckoutSessionFactory(status=CheckoutSession.Status.COMPLETED)
    pending = PaymentFactory(status=Payment.Status.REFUND_PENDING, recurrente_refund_id="re_old0001")
    migration.forwards(apps, connection.schema_editor())
    open_one.refresh_from_db()
    closed.refresh_from_db()
    assert open_one.next_reconcile_at is not None and closed.next_reconcile_at is None
    refund = Refund.objects.get()
    assert (refund.recurrente_refund_id, refund.payment, refund.status) == ("re_old0001", pending, Refund.Status.PENDING)
    assert refund.next_check_at is not None  # polled until final


def test_the_hosting_return_is_for_the_sites_owner_only(client):
    site = SiteFactory(status=Site.Status.OWNED, owner=CustomerFactory())
    client.force_login(CustomerFactory())
    assert client.get(f"/portal/sites/{site.slug}/hosting/returned/").status_code == 404
    client.logout()
    assert client.get(f"/portal/sites/{site.slug}/hosting/returned/").status_code == 302  # to login
