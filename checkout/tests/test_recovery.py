"""Abandoned checkout recovery: the scan, the claim, the send decision and the reminder email."""

import json
import re
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.utils import timezone
from freezegun import freeze_time

from checkout import selectors
from checkout.ledger import PaymentConfirmation
from checkout.models import CheckoutSession, Payment
from checkout.services import reconcile, recovery
from checkout.services.confirmations import payment_confirmed_record
from checkout.tasks import check_abandoned_carts
from checkout.tests.factories import CheckoutSessionFactory
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webmagic.models import EmailLog, EmailSuppression
from webmagic.tasks import send_email

pytestmark = pytest.mark.django_db

CODE = re.compile(r"^SAVE10-[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{10}$")


def open_session(*, minutes_ago=20, **kwargs) -> CheckoutSession:
    """A checkout_created session created `minutes_ago` (created_at is auto_now_add, so moved after)."""
    session = CheckoutSessionFactory(**kwargs)
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    session.refresh_from_db()
    return session


def scan(capture):
    with capture(execute=True):
        return check_abandoned_carts()


def reminders():
    return list(EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER))


# --- Due and claim ------------------------------------------------------------------------------

def test_a_due_session_gets_one_reminder_and_is_claimed(recurrente_checkouts, django_capture_on_commit_callbacks, preview_site):
    session = open_session(site=preview_site, customer_email="maria@example.com")
    summary = scan(django_capture_on_commit_callbacks)
    assert summary == {"reminded": 1, "closed": 0, "reconciled": 0, "deferred": 0}
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.ABANDONED
    assert session.reminder_sent_at and session.abandoned_at == session.reminder_sent_at
    assert CODE.match(session.recovery_code)
    [log] = reminders()
    assert log.dedupe_key == recovery.recovery_dedupe_key(site_id=preview_site.pk, email="maria@example.com")
    assert "maria" not in log.dedupe_key  # a keyed digest: the key outlives the address (90-day cleanup)
    assert log.checkout_session == session and log.status == EmailLog.Status.SENT
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["maria@example.com"]
    assert recurrente_checkouts["_seen"] == [session.recurrente_checkout_id]  # asked Recurrente first


def test_time_decides_when_a_session_is_due(recurrente_checkouts, django_capture_on_commit_callbacks, preview_site):
    with freeze_time("2026-11-20 10:00:00"):
        session = CheckoutSessionFactory(site=preview_site)
    with freeze_time("2026-11-20 10:14:59"):
        assert scan(django_capture_on_commit_callbacks)["reminded"] == 0
    with freeze_time("2026-11-20 10:15:01"):
        assert scan(django_capture_on_commit_callbacks)["reminded"] == 1
    session.refresh_from_db()
    assert session.reminder_sent_at.isoformat() == "2026-11-20T10:15:01+00:00"


@pytest.mark.parametrize("status", ["initiated", "completed", "abandoned", "expired"])
def test_only_open_checkouts_are_due(status, recurrente_checkouts, django_capture_on_commit_callbacks):
    open_session(status=status, recurrente_checkout_id=None if status == "initiated" else "ch_x1")
    assert scan(django_capture_on_commit_callbacks)["reminded"] == 0
    assert reminders() == [] and mail.outbox == []


def test_hosting_checkouts_get_no_purchase_reminder(recurrente_checkouts, django_capture_on_commit_callbacks):
    open_session(kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"))
    assert scan(django_capture_on_commit_callbacks)["reminded"] == 0 and mail.outbox == []


def test_a_second_tick_sends_nothing_more(recurrente_checkouts, django_capture_on_commit_callbacks):
    open_session()
    scan(django_capture_on_commit_callbacks)
    first_claim = CheckoutSession.objects.get().reminder_sent_at
    assert scan(django_capture_on_commit_callbacks)["reminded"] == 0
    assert len(mail.outbox) == 1 and len(reminders()) == 1
    assert CheckoutSession.objects.get().reminder_sent_at == first_claim


def test_several_attempts_by_one_person_for_one_site_get_one_reminder(
    recurrente_checkouts, django_capture_on_commit_callbacks, preview_site
):
    older = open_session(site=preview_site, customer_email="maria@example.com", minutes_ago=90, customer_name="maria")
    newer = open_session(site=preview_site, customer_email="maria@example.com", minutes_ago=30, customer_name="María López")
    summary = scan(django_capture_on_commit_callbacks)
    assert summary["reminded"] == 1 and summary["closed"] == 1
    older.refresh_from_db(), newer.refresh_from_db()
    # The newest attempt carries the reminder; the other is abandoned without an email or a claim.
    assert newer.reminder_sent_at and CODE.match(newer.recovery_code)
    assert older.status == CheckoutSession.Status.ABANDONED and older.reminder_sent_at is None and older.recovery_code == ""
    assert len(mail.outbox) == 1 and "Hi María," in mail.outbox[0].body


def test_a_later_attempt_by_a_reminded_person_is_not_reminded_again(
    recurrente_checkouts, django_capture_on_commit_callbacks, preview_site
):
    open_session(site=preview_site, customer_email="maria@example.com")
    scan(django_capture_on_commit_callbacks)
    again = open_session(site=preview_site, customer_email="maria@example.com", minutes_ago=16)
    summary = scan(django_capture_on_commit_callbacks)
    assert summary == {"reminded": 0, "closed": 1, "reconciled": 0, "deferred": 0}
    again.refresh_from_db()
    assert again.status == CheckoutSession.Status.ABANDONED and again.reminder_sent_at is None
    assert len(mail.outbox) == 1 and len(reminders()) == 1


def test_one_reminder_per_person_and_site_not_per_person(recurrente_checkouts, django_capture_on_commit_callbacks, preview_site):
    other_site = SiteFactory()
    open_session(site=preview_site, customer_email="maria@example.com")
    open_session(site=other_site, customer_email="maria@example.com")
    open_session(site=preview_site, customer_email="juan@example.com")
    assert scan(django_capture_on_commit_callbacks)["reminded"] == 3
    assert sorted(log.dedupe_key for log in reminders()) == sorted(
        recovery.recovery_dedupe_key(site_id=site.pk, email=email)
        for site, email in [(preview_site, "maria@example.com"), (other_site, "maria@example.com"), (preview_site, "juan@example.com")]
    )
    assert len(mail.outbox) == 3


def test_codes_are_random(recurrente_checkouts, django_capture_on_commit_callbacks):
    for _ in range(5):
        open_session()
    scan(django_capture_on_commit_callbacks)
    codes = {s.recovery_code for s in CheckoutSession.objects.all()}
    assert len(codes) == 5 and all(CODE.match(c) for c in codes)


def test_a_very_long_address_still_gets_a_stable_unique_dedupe_key(preview_site):
    email = "a" * 64 + "@" + "b" * 150 + ".example.com"
    key = recovery.recovery_dedupe_key(site_id=preview_site.pk, email=email)
    assert len(key) <= 200 and key == recovery.recovery_dedupe_key(site_id=preview_site.pk, email=email)
    assert key != recovery.recovery_dedupe_key(site_id=preview_site.pk, email="c" + email[1:])
    assert key == recovery.recovery_dedupe_key(site_id=preview_site.pk, email=email.upper() + " ")  # one mailbox


# --- The send decision --------------------------------------------------------------------------

def test_no_reminder_when_the_site_was_sold(recurrente_checkouts, django_capture_on_commit_callbacks, preview_site):
    session = open_session(site=preview_site)
    Site.objects.filter(pk=preview_site.pk).update(status=Site.Status.OWNED, owner=CustomerFactory())
    assert scan(django_capture_on_commit_callbacks)["closed"] == 1
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.EXPIRED and session.expired_at and session.reminder_sent_at is None
    assert reminders() == [] and mail.outbox == []


def test_no_reminder_when_the_same_email_already_bought_it(recurrente_checkouts, django_capture_on_commit_callbacks, preview_site):
    CheckoutSessionFactory(site=preview_site, customer_email="maria@example.com", status=CheckoutSession.Status.COMPLETED)
    session = open_session(site=preview_site, customer_email="maria@example.com")
    someone_else = open_session(site=preview_site, customer_email="juan@example.com")
    summary = scan(django_capture_on_commit_callbacks)
    assert summary["closed"] == 1 and summary["reminded"] == 1
    session.refresh_from_db(), someone_else.refresh_from_db()
    assert session.status == CheckoutSession.Status.EXPIRED and session.reminder_sent_at is None
    assert someone_else.reminder_sent_at is not None
    assert [m.to for m in mail.outbox] == [["juan@example.com"]]


def test_no_reminder_to_an_unsubscribed_address(recurrente_checkouts, django_capture_on_commit_callbacks):
    session = open_session(customer_email="maria@example.com")
    EmailSuppression.objects.create(email="maria@example.com")
    assert scan(django_capture_on_commit_callbacks)["closed"] == 1
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.ABANDONED and session.reminder_sent_at is None
    assert reminders() == [] and mail.outbox == []


def test_paid_at_recurrente_is_reconciled_as_a_payment_instead_of_reminded(
    recurrente_checkouts, django_capture_on_commit_callbacks, preview_site
):
    session = open_session(site=preview_site, customer_email="maria@example.com")
    recurrente_checkouts[session.recurrente_checkout_id] = "paid"
    summary = scan(django_capture_on_commit_callbacks)
    assert summary == {"reminded": 0, "closed": 0, "reconciled": 1, "deferred": 0}
    session.refresh_from_db(), preview_site.refresh_from_db()
    payment = Payment.objects.get()
    assert payment.recurrente_payment_id == f"pa_{session.recurrente_checkout_id[3:]}"
    assert payment.checkout_session == session and payment.amount == Decimal("495.00") and payment.card_last4 == "4242"
    assert session.status == CheckoutSession.Status.COMPLETED and session.reminder_sent_at is None
    assert preview_site.status == Site.Status.OWNED and preview_site.owner.email == "maria@example.com"
    assert reminders() == []
    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECEIPT).count() == 1  # as if the webhook had come
    # The webhook arriving afterwards is a duplicate, not a second payment.
    assert scan(django_capture_on_commit_callbacks)["reconciled"] == 0 and Payment.objects.count() == 1


def test_one_paid_attempt_holds_back_the_persons_other_attempts(
    recurrente_checkouts, django_capture_on_commit_callbacks, preview_site
):
    paid = open_session(site=preview_site, customer_email="maria@example.com", minutes_ago=40)
    other = open_session(site=preview_site, customer_email="maria@example.com", minutes_ago=20)
    recurrente_checkouts[paid.recurrente_checkout_id] = "paid"
    scan(django_capture_on_commit_callbacks)
    assert reminders() == []
    # Next tick: the site is sold (to them), so the other attempt is closed silently.
    scan(django_capture_on_commit_callbacks)
    other.refresh_from_db()
    assert other.status == CheckoutSession.Status.EXPIRED and reminders() == []


@pytest.mark.parametrize("answer", ["payment_in_progress", 500, 503, 401])
def test_no_reminder_while_paying_or_while_recurrente_cannot_say(
    answer, recurrente_checkouts, django_capture_on_commit_callbacks
):
    session = open_session()
    recurrente_checkouts[session.recurrente_checkout_id] = answer
    assert scan(django_capture_on_commit_callbacks)["deferred"] == 1
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.CHECKOUT_CREATED and session.reminder_sent_at is None
    assert mail.outbox == []
    # Once Recurrente answers "unpaid", the next tick sends it. (A bank transfer Recurrente reported
    # in progress is marked on the session; the reconciler's next look at the unpaid checkout clears it.)
    recurrente_checkouts[session.recurrente_checkout_id] = "unpaid"
    if answer == "payment_in_progress":
        session.refresh_from_db()
        assert session.payment_in_progress_at is not None
        CheckoutSession.objects.filter(pk=session.pk).update(next_reconcile_at=timezone.now())
        reconcile.reconcile_pass()
    assert scan(django_capture_on_commit_callbacks)["reminded"] == 1 and len(mail.outbox) == 1


def test_a_checkout_recurrente_does_not_know_is_reminded(recurrente_checkouts, django_capture_on_commit_callbacks):
    session = open_session()
    recurrente_checkouts[session.recurrente_checkout_id] = 404
    assert scan(django_capture_on_commit_callbacks)["reminded"] == 1


def test_a_bank_transfer_in_progress_is_not_reminded(recurrente_checkouts, django_capture_on_commit_callbacks):
    open_session(payment_in_progress_at=timezone.now())
    assert scan(django_capture_on_commit_callbacks)["deferred"] == 1
    assert recurrente_checkouts["_seen"] == [] and mail.outbox == []


def test_sandbox_mode_works_without_recurrente(django_capture_on_commit_callbacks):
    open_session()  # no SandboxCheckout row: the sandbox answers 404, as Recurrente would
    assert scan(django_capture_on_commit_callbacks)["reminded"] == 1


# --- Crash and provider failure -----------------------------------------------------------------

def test_a_crash_between_claim_and_send_never_sends_twice(recurrente_checkouts, django_capture_on_commit_callbacks):
    session = open_session()
    with django_capture_on_commit_callbacks(execute=False):  # the process dies before the send task runs
        check_abandoned_carts()
    [log] = reminders()
    assert log.status == EmailLog.Status.QUEUED and mail.outbox == []
    # A later tick does not claim again or queue another email...
    scan(django_capture_on_commit_callbacks)
    assert len(reminders()) == 1 and mail.outbox == []
    # ...and the broker redelivering the send task twice still sends once.
    send_email.delay(log.pk)
    send_email.delay(log.pk)
    assert len(mail.outbox) == 1
    session.refresh_from_db()
    assert session.reminder_sent_at is not None


@pytest.mark.postgres  # the immediate takeover relies on row locks
def test_a_worker_dying_mid_send_is_taken_over_once_under_the_same_idempotency_key(
    recurrente_checkouts, django_capture_on_commit_callbacks
):
    open_session()
    with django_capture_on_commit_callbacks(execute=False):
        check_abandoned_carts()
    [log] = reminders()
    EmailLog.objects.filter(pk=log.pk).update(status=EmailLog.Status.SENDING, attempts=1)  # claimed, then the worker died
    send_email.delay(log.pk)  # redelivered: the dead attempt's outcome is unknown, the provider dedupes on the key
    send_email.delay(log.pk)
    scan(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1 and len(reminders()) == 1
    log.refresh_from_db()
    assert log.status == EmailLog.Status.SENT and mail.outbox[0].extra_headers["idempotencyKey"]


def test_provider_failure_is_retried_with_backoff_without_a_second_claim(
    recurrente_checkouts, django_capture_on_commit_callbacks
):
    session = open_session()
    real_send = mail.EmailMultiAlternatives.send
    calls = {"n": 0}

    def flaky_send(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("provider down")
        return real_send(self, *args, **kwargs)

    countdowns = []

    def record_retry(exc, countdown):
        countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)

    with mock.patch.object(mail.EmailMultiAlternatives, "send", flaky_send), \
            mock.patch.object(send_email, "retry", side_effect=record_retry):
        with django_capture_on_commit_callbacks(execute=False):
            check_abandoned_carts()
        [log] = reminders()
        assert send_email.apply(args=[log.pk], retries=0, throw=False).state == "RETRY"
        session.refresh_from_db()
        claimed_at = session.reminder_sent_at
        scan(django_capture_on_commit_callbacks)  # a tick meanwhile claims nothing new
        assert send_email.apply(args=[log.pk], retries=1, throw=False).successful()
    log.refresh_from_db(), session.refresh_from_db()
    assert countdowns == [30]
    assert log.status == EmailLog.Status.SENT and log.attempts == 2
    assert len(mail.outbox) == 1 and len(reminders()) == 1
    assert session.reminder_sent_at == claimed_at


# --- Late completion ----------------------------------------------------------------------------

def test_late_completion_after_the_reminder_completes_and_counts_as_recovered(
    recurrente_checkouts, django_capture_on_commit_callbacks, preview_site
):
    session = open_session(site=preview_site, customer_email="maria@example.com")
    scan(django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = payment_confirmed_record(confirmation=PaymentConfirmation(
            payment_id="pa_late1", amount_cents=49500, currency="USD", checkout_id=session.recurrente_checkout_id,
        ))
    assert outcome == "fulfilled"
    session.refresh_from_db(), preview_site.refresh_from_db()
    assert session.status == CheckoutSession.Status.COMPLETED and session.completed_at
    assert preview_site.status == Site.Status.OWNED
    assert list(CheckoutSession.objects.filter(selectors.recovered_q())) == [session]


def test_a_completion_without_a_reminder_is_not_counted_as_recovered(preview_site):
    CheckoutSessionFactory(site=preview_site, status=CheckoutSession.Status.COMPLETED)
    assert not CheckoutSession.objects.filter(selectors.recovered_q()).exists()


# --- The email ----------------------------------------------------------------------------------

def test_the_reminder_email_says_everything_design_asks_for(recurrente_checkouts, django_capture_on_commit_callbacks, preview_site):
    with freeze_time("2026-11-20 10:30:00"):
        session = open_session(site=preview_site, customer_email="maria@example.com", customer_name="María López")
        scan(django_capture_on_commit_callbacks)
    session.refresh_from_db()
    [message] = mail.outbox
    html = message.alternatives[0][0]
    assert message.alternatives[0][1] == "text/html"
    assert "LA Plumbing Pros" in message.subject and "10% off" in message.subject
    for body in (message.body, html):
        assert "Hi María," in body and "María López" not in body and "LA Plumbing Pros" in body
        assert "$495" in body and "$445.50" in body and "10% off" in body
        # No dead code to type: the link applies the offer, and the code is only a reference.
        assert "No code to type" in body and "applies your 10% discount for you" in body
        assert "Your code" not in body and "Offer reference, if you write to us: " in body and session.recovery_code in body
        assert "48 hours" in body and "November 22, 2026, 4:30 AM CST" in body  # local time, zone named
        assert "http://testserver/sites/la-plumbing-pros/" in body  # the preview link
        assert "1 Example Street" in body  # postal address
        assert "$95/month" in body
    recovery_urls = set(re.findall(r"http://testserver/checkout/recover/[^/\s\"]+/", message.body + html))
    assert len(recovery_urls) == 1
    assert html.count("<a href=\"http://testserver/checkout/recover/") == 2  # one button and its copy-the-link fallback…
    assert html.count("border-radius:10px;background:#4f46e5") == 1
    assert 'name="viewport"' in html and "max-width:560px" in html  # responsive layout
    unsubscribe_urls = set(re.findall(r"http://testserver/checkout/unsubscribe/[^/\s\"]+/", message.body + html))
    assert len(unsubscribe_urls) == 1
    [unsubscribe_url] = unsubscribe_urls
    assert message.extra_headers["List-Unsubscribe"] == f"<{unsubscribe_url}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_tokens_are_built_at_send_time_and_never_stored(recurrente_checkouts, django_capture_on_commit_callbacks):
    open_session()
    scan(django_capture_on_commit_callbacks)
    [log] = reminders()
    [token] = re.findall(r"/checkout/recover/([^/\s]+)/", mail.outbox[0].body)
    stored = json.dumps(log.context) + log.subject + log.error
    assert token not in stored and "/recover/" not in stored and "/unsubscribe/" not in stored
    assert not CheckoutSession.objects.filter(recovery_code__contains=token).exists()


def test_the_customer_name_is_escaped_in_html(recurrente_checkouts, django_capture_on_commit_callbacks):
    open_session(customer_name="<script>alert(1)</script> Bob")
    scan(django_capture_on_commit_callbacks)
    html = mail.outbox[0].alternatives[0][0]
    assert "<script>" not in html and "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in html


def test_the_discounted_price_follows_the_session_amount(recurrente_checkouts, django_capture_on_commit_callbacks):
    open_session(amount=Decimal("650.50"))
    scan(django_capture_on_commit_callbacks)
    body = mail.outbox[0].body
    assert "$650.50" in body and "$585.45" in body  # 650.50 × 0.9 = 585.45


def test_an_odd_answer_from_recurrente_does_not_stop_the_scan_for_everyone(db, monkeypatch, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.core import mail
    from django.utils import timezone

    from checkout.models import CheckoutSession
    from checkout.services import recovery
    from checkout.tests.factories import CheckoutSessionFactory

    odd = CheckoutSessionFactory(customer_email="odd@example.com")
    fine = CheckoutSessionFactory(customer_email="fine@example.com")
    CheckoutSession.objects.filter(pk=odd.pk).update(created_at=timezone.now() - timedelta(minutes=40))
    CheckoutSession.objects.filter(pk=fine.pk).update(created_at=timezone.now() - timedelta(minutes=30))

    class Client:
        def get_checkout(self, checkout_id):
            if checkout_id == odd.recurrente_checkout_id:
                return {"status": "paid", "payment": "not-a-dict"}  # a shape we never saw
            return {"status": "unpaid"}

    monkeypatch.setattr(recovery, "recurrente_client", lambda: Client())
    with django_capture_on_commit_callbacks(execute=True):
        result = recovery.abandoned_carts_check()
    assert odd.pk in result.deferred and result.reminded == [fine.pk]
    assert [m.to for m in mail.outbox] == [["fine@example.com"]]


@pytest.mark.parametrize("change", ["paid", "unsubscribed", "sold"])
def test_a_reminder_whose_send_is_retried_after_the_buyer_paid_or_unsubscribed_is_cancelled(db, monkeypatch, change):
    from datetime import timedelta

    from django.core import mail
    from django.utils import timezone

    from checkout.models import CheckoutSession
    from checkout.services import recovery
    from checkout.tests.factories import CheckoutSessionFactory
    from customers.tests.factories import CustomerFactory
    from sites.models import Site
    from webmagic.models import EmailLog, EmailSuppression
    from webmagic.tasks import send_email

    session = CheckoutSessionFactory(customer_email="late@example.com")
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=30))

    class Unpaid:
        def get_checkout(self, checkout_id):
            return {"status": "unpaid"}

    monkeypatch.setattr(recovery, "recurrente_client", lambda: Unpaid())
    # The reminder is claimed and queued; its send happens later (a slow queue, a provider retry).
    recovery.abandoned_carts_check()
    log = EmailLog.objects.get(kind=EmailLog.Kind.RECOVERY_REMINDER)
    if change == "paid":
        CheckoutSession.objects.filter(pk=session.pk).update(status=CheckoutSession.Status.COMPLETED)
    elif change == "unsubscribed":
        EmailSuppression.objects.create(email="late@example.com", source="test")
    else:
        Site.objects.filter(pk=session.site_id).update(status=Site.Status.OWNED, owner=CustomerFactory())
    send_email.apply(args=[log.pk], retries=1)
    log.refresh_from_db()
    assert log.status == EmailLog.Status.CANCELLED and mail.outbox == []
