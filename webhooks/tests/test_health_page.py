"""The payments health page in admin (DESIGN §8): each section's status and advice, access, cost."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from checkout.models import CheckoutSession, Payment, ReconcileRun, Refund
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory
from customers.tests.factories import CustomerFactory
from webhooks import health
from webhooks.models import WebhookEvent, WebhookRejection
from webmagic.models import EmailLog, Heartbeat, StaffAlert
from webmagic.tests.admin_queries import assert_constant_queries

pytestmark = pytest.mark.django_db

URL = "/admin/payments-health/"
SECTIONS = ["deliveries", "rejections", "reconciler", "refunds", "payments", "emails", "worker", "alerts"]


# --- Rows -------------------------------------------------------------------------------------

def delivery(*, ago: timedelta, event_type="payment_intent.succeeded", n=0) -> WebhookEvent:
    event = WebhookEvent.objects.create(
        delivery_id=f"msg_health{n}_{ago.total_seconds():.0f}", event_type=event_type, live_mode=False,
        raw_body="{}", payload={}, status=WebhookEvent.Status.PROCESSED,
    )
    # received_at is auto_now_add: move it back afterwards.
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - ago)
    return event


def rejection(*, reason, count, ago: timedelta) -> WebhookRejection:
    bucket = (timezone.now() - ago).replace(second=0, microsecond=0)
    return WebhookRejection.objects.create(bucket=bucket, reason=reason, count=count, last_rejected_at=bucket)


def run(*, ago: timedelta, **fields) -> ReconcileRun:
    started = timezone.now() - ago
    return ReconcileRun.objects.create(started_at=started, finished_at=started + timedelta(seconds=3), **fields)


def beat(*, ago: timedelta) -> None:
    Heartbeat.objects.update_or_create(name="worker", defaults={"beat_at": timezone.now() - ago})


def unmatched_refund(refund_id="re_unmatched1") -> Refund:
    return Refund.objects.create(recurrente_refund_id=refund_id, source=Refund.Source.WEBHOOK, status=Refund.Status.SUCCEEDED,
                                 customer_refunded_amount=Decimal("495.00"), currency="USD")


def failed_email(*, kind=EmailLog.Kind.RECEIPT) -> EmailLog:
    return EmailLog.objects.create(kind=kind, to_email="maria.lopez@example.com", status=EmailLog.Status.FAILED,
                                   error="AnymailAPIError: 401 Unauthorized", attempts=3)


def staff_alert(*, kind="worker_heartbeat", subject="Worker heartbeat is 30 minutes old", sequence=1, ago=timedelta(minutes=5)):
    return StaffAlert.objects.create(kind=kind, sequence=sequence, subject=subject, body="…", fired_at=timezone.now() - ago)


def healthy_state():
    delivery(ago=timedelta(minutes=10))
    run(ago=timedelta(minutes=3), checkouts_checked=2, subscriptions_checked=1)
    beat(ago=timedelta(seconds=40))
    CheckoutSessionFactory(next_reconcile_at=timezone.now() + timedelta(minutes=5))


def broken_state():
    delivery(ago=timedelta(days=3), event_type="checkout.completed")
    rejection(reason=WebhookRejection.Reason.BAD_SIGNATURE, count=5, ago=timedelta(minutes=30))
    rejection(reason=WebhookRejection.Reason.OTHER_MODE, count=2, ago=timedelta(days=3))
    run(ago=timedelta(minutes=4), checkouts_checked=1, errors=1,
        stopped_early="Recurrente refused our API key (HTTP 401): check RECURRENTE_SECRET_KEY",
        findings="subscription su_abc123: active → past_due")
    unmatched_refund()
    PaymentFactory(recurrente_payment_id="pa_disputed1", flag=Payment.Flag.DISPUTED)
    PaymentFactory(recurrente_payment_id="pa_mismatch1", flag=Payment.Flag.AMOUNT_MISMATCH)
    failed_email()
    beat(ago=timedelta(minutes=30))
    staff_alert()


# --- Reading the page -------------------------------------------------------------------------

def page(client) -> str:
    response = client.get(URL)
    assert response.status_code == 200
    return response.content.decode()


def section(body: str, name: str) -> str:
    match = re.search(rf'<section[^>]*aria-labelledby="health-{name}">(.*?)</section>', body, re.S)
    assert match, f"no {name} section"
    return match.group(1)


def status_of(body: str, name: str) -> str:
    match = re.search(r'class="health-badge health-badge-(\w+)">(\w+)<', section(body, name))
    assert match, f"no status label in the {name} section"
    assert match.group(2) == health.STATUS_LABELS[match.group(1)]  # the label is written out, not colour only
    return match.group(1)


def overall(body: str) -> str:
    match = re.search(r'class="health-overall health-\w+">\s*<span class="health-badge health-badge-(\w+)">', body)
    assert match, "no overall status"
    return match.group(1)


def statuses(body: str) -> dict[str, str]:
    return {name: status_of(body, name) for name in SECTIONS}


# --- States -----------------------------------------------------------------------------------

def test_empty_database_warns_of_no_deliveries_and_a_reconciler_that_never_ran(staff_client):
    body = page(staff_client)
    assert "Payments health" in body
    assert statuses(body) == {
        "deliveries": "warning", "rejections": "ok", "reconciler": "problem", "refunds": "ok",
        "payments": "ok", "emails": "ok", "worker": "problem", "alerts": "ok",
    }
    assert "No webhook delivery has ever been accepted." in section(body, "deliveries")
    assert "reconciliation keeps payments flowing meanwhile" in section(body, "deliveries")
    assert "The reconciler has never run" in section(body, "reconciler")
    assert "0 being reconciled" in section(body, "reconciler")
    assert "No worker heartbeat has ever been recorded." in section(body, "worker")
    assert "Start or restart the Celery worker and beat; webhooks and emails wait meanwhile." in section(body, "worker")
    assert overall(body) == "problem"  # the worst of the sections


def test_healthy_state_is_ok_everywhere(staff_client):
    healthy_state()
    body = page(staff_client)
    assert set(statuses(body).values()) == {"ok"} and overall(body) == "ok"
    assert "payments are flowing" in body
    deliveries = section(body, "deliveries")
    assert "payment_intent.succeeded" in deliveries and "10\xa0minutes ago" in deliveries
    reconciler = section(body, "reconciler")
    assert "2 checkout(s), 1 subscription(s), 0 pending refund(s)" in reconciler
    assert "1 being reconciled" in reconciler
    assert "What to do" not in body


def test_broken_state_says_what_is_wrong_and_what_to_do(staff_client):
    broken_state()
    body = page(staff_client)
    assert statuses(body) == {
        "deliveries": "warning", "rejections": "problem", "reconciler": "problem", "refunds": "problem",
        "payments": "problem", "emails": "problem", "worker": "problem", "alerts": "warning",
    }
    assert "No webhook delivery accepted in the last 24 hours" in section(body, "deliveries")

    rejections = section(body, "rejections")
    assert "5 deliveries refused in the last 24 hours and none accepted" in rejections
    assert "Bad signature: wrong or rotated RECURRENTE_WEBHOOK_SECRETS" in rejections
    assert "into RECURRENTE_WEBHOOK_SECRETS" in rejections  # the fix, not only the meaning
    assert "Other mode: live_mode differs" in rejections
    assert "reason__exact=bad_signature&amp;bucket__gte=" in rejections

    reconciler = section(body, "reconciler")
    assert "stopped early: Recurrente refused our API key (HTTP 401)" in reconciler
    assert "in RECURRENTE_SECRET_KEY and restart the app" in reconciler
    assert "subscription su_abc123: active → past_due" in reconciler
    assert "/admin/checkout/reconcilerun/" in reconciler

    refunds = section(body, "refunds")
    assert "1 refund(s) reported by Recurrente match no payment of ours." in refunds
    assert "re_unmatched1" in refunds and "?unmatched=yes" in refunds
    assert "/admin/checkout/refund/record/" in refunds

    payments = section(body, "payments")
    assert "1 payment(s) disputed (chargeback) and not refunded; 1 more flagged for a refund." in payments
    assert "Answer each dispute in Recurrente" in payments and "Refund through Recurrente" in payments
    assert "pa_disputed1" in payments and "pa_mismatch1" in payments
    assert "?flag__exact=disputed&amp;status__exact=succeeded" in payments

    emails = section(body, "emails")
    assert "1 email(s) failed in the last 24 hours, customer emails among them." in emails
    assert "Purchase receipt" in emails and "/admin/webmagic/emaillog/?status__exact=failed" in emails

    worker = section(body, "worker")
    assert "The worker heartbeat is stale (last beat 30 minutes ago)" in worker
    assert "Start or restart the Celery worker and beat" in worker

    alerts = section(body, "alerts")
    assert "worker_heartbeat" in alerts and "Worker heartbeat is 30 minutes old" in alerts


def test_rejection_links_open_the_rows_counted(staff_client):
    rejection(reason=WebhookRejection.Reason.BAD_SIGNATURE, count=5, ago=timedelta(minutes=30))
    rejection(reason=WebhookRejection.Reason.BAD_SIGNATURE, count=7, ago=timedelta(days=3))
    rejections = section(page(staff_client), "rejections")
    day_link, week_link = re.findall(r'href="(/admin/webhooks/webhookrejection/\?[^"]+)"', rejections)
    day = staff_client.get(day_link.replace("&amp;", "&"))
    week = staff_client.get(week_link.replace("&amp;", "&"))
    assert day.status_code == week.status_code == 200
    assert day.context["cl"].result_count == 1 and week.context["cl"].result_count == 2


def test_some_rejections_while_others_are_accepted_is_a_warning(staff_client):
    delivery(ago=timedelta(minutes=5))
    rejection(reason=WebhookRejection.Reason.STALE_TIMESTAMP, count=1, ago=timedelta(minutes=20))
    body = page(staff_client)
    assert status_of(body, "rejections") == "warning"
    assert "Check the server clock (NTP)" in section(body, "rejections")


def test_only_scanner_noise_is_ok_and_says_so(staff_client):
    rejection(reason=WebhookRejection.Reason.MISSING_HEADERS, count=40, ago=timedelta(minutes=20))
    rejection(reason=WebhookRejection.Reason.OVERSIZED_BODY, count=2, ago=timedelta(minutes=10))
    body = page(staff_client)
    assert status_of(body, "rejections") == "ok"
    assert "what scanners send" in section(body, "rejections")
    rejection(reason=WebhookRejection.Reason.BAD_SIGNATURE, count=1, ago=timedelta(minutes=5))
    assert status_of(page(staff_client), "rejections") == "problem"  # and no delivery accepted


def test_reconciler_verdicts():
    now = timezone.now()
    stale = ReconcileRun(started_at=now - timedelta(minutes=40), finished_at=now - timedelta(minutes=40))
    assert health.reconciler_verdict(run=stale, now=now).status == health.WARNING
    assert "beat or the worker may be down" in health.reconciler_verdict(run=stale, now=now).summary
    budget = ReconcileRun(started_at=now - timedelta(minutes=1), stopped_early="time budget used up")
    assert health.reconciler_verdict(run=budget, now=now).status == health.WARNING
    throttled = ReconcileRun(started_at=now - timedelta(minutes=1), stopped_early="Recurrente asked us to slow down (HTTP 429)")
    assert health.reconciler_verdict(run=throttled, now=now).status == health.WARNING
    running = ReconcileRun(started_at=now - timedelta(minutes=1))
    assert health.reconciler_verdict(run=running, now=now).status == health.OK
    erred = ReconcileRun(started_at=now - timedelta(minutes=1), errors=2)
    assert health.reconciler_verdict(run=erred, now=now).status == health.WARNING


def test_flagged_payments_still_holding_money_are_a_warning_and_refunded_ones_are_not(staff_client):
    PaymentFactory(flag=Payment.Flag.NEEDS_REFUND)
    PaymentFactory(flag=Payment.Flag.DISPUTED, status=Payment.Status.REFUNDED)
    body = page(staff_client)
    assert status_of(body, "payments") == "warning"
    assert "1 flagged payment(s)" in section(body, "payments")


def test_a_refund_pending_for_more_than_a_day_is_a_warning(staff_client):
    payment = PaymentFactory()
    refund = Refund.objects.create(recurrente_refund_id="re_slow1", payment=payment, source=Refund.Source.STAFF_REQUEST)
    Refund.objects.filter(pk=refund.pk).update(created_at=timezone.now() - timedelta(days=2))
    body = page(staff_client)
    assert status_of(body, "refunds") == "warning"
    assert "re_slow1" in section(body, "refunds") and payment.recurrente_payment_id in section(body, "refunds")


def test_failed_reminders_only_are_a_warning(staff_client):
    failed_email(kind=EmailLog.Kind.RECOVERY_REMINDER)
    assert status_of(page(staff_client), "emails") == "warning"


# --- Access, cost, navigation -----------------------------------------------------------------

def test_anonymous_users_are_sent_to_the_admin_login(client, db):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_customers_who_are_not_staff_are_sent_to_the_admin_login(client):
    client.force_login(CustomerFactory())
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_page_runs_the_same_number_of_queries_for_3_and_30_rows(staff_client):
    beat(ago=timedelta(minutes=30))
    delivery(ago=timedelta(minutes=1))
    reasons = list(WebhookRejection.Reason)
    kinds = list(EmailLog.Kind)
    made = {"n": 0}

    def make_rows(count):
        for _ in range(count):
            i = made["n"] = made["n"] + 1
            rejection(reason=reasons[i % len(reasons)], count=i, ago=timedelta(minutes=i))
            run(ago=timedelta(minutes=i), findings=f"session {i}: paid at Recurrente, recorded now (no webhook had)")
            unmatched_refund(f"re_rows{i}")
            PaymentFactory(flag=Payment.Flag.DISPUTED if i % 2 else Payment.Flag.NEEDS_REFUND)
            failed_email(kind=kinds[i % len(kinds)])
            staff_alert(kind=f"kind{i}", sequence=1)
            CheckoutSessionFactory(status=CheckoutSession.Status.ABANDONED, next_reconcile_at=timezone.now())

    assert_constant_queries(staff_client, URL, make_rows)


def test_the_admin_index_links_to_the_page(staff_client):
    body = staff_client.get("/admin/").content.decode()
    assert f'href="{URL}"' in body and "Payments health" in body
