"""Daily cleanup of old attempts (expiry, personal data after 90 days), and the beat schedule rows
the data migration creates."""

import importlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from freezegun import freeze_time

from checkout.models import CheckoutSession, Payment
from checkout.services.recovery import recovery_dedupe_key
from checkout.tasks import check_abandoned_carts, cleanup_old_abandoned_carts
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory, SubscriptionFactory
from sites.tests.factories import SiteFactory
from webmagic.models import EmailLog, EmailSuppression

pytestmark = pytest.mark.django_db

S = CheckoutSession.Status
NOW = "2026-11-20 03:00:00"


def session_at(*, created, status=S.CHECKOUT_CREATED, reminded=None, **kwargs) -> CheckoutSession:
    """A session created `created` ago (and reminded `reminded` ago), relative to NOW."""
    now = timezone.now()
    session = CheckoutSessionFactory(
        status=status, ip_address="203.0.113.7", user_agent="Mozilla/5.0", referrer="https://mail.example/",
        recurrente_checkout_id=None if status == S.INITIATED else f"ch_c{CheckoutSession.objects.count():06d}",
        reminder_sent_at=now - reminded if reminded is not None else None, **kwargs,
    )
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=now - created)
    return session


def status_of(session) -> str:
    session.refresh_from_db()
    return session.status


@freeze_time(NOW)
def test_attempts_past_the_recovery_window_expire_and_the_rest_stay():
    # The window: delay (15 min) + 48 h from creation, and 48 h from a reminder that went out.
    old_open = session_at(created=timedelta(hours=48, minutes=16))
    young_open = session_at(created=timedelta(hours=48, minutes=14))
    old_initiated = session_at(created=timedelta(hours=49), status=S.INITIATED)
    reminded_long_ago = session_at(created=timedelta(hours=49), status=S.ABANDONED, reminded=timedelta(hours=48, seconds=1))
    reminded_late = session_at(created=timedelta(hours=60), status=S.ABANDONED, reminded=timedelta(hours=47))
    silent_sibling = session_at(created=timedelta(hours=49), status=S.ABANDONED)
    completed = session_at(created=timedelta(days=10), status=S.COMPLETED)

    result = cleanup_old_abandoned_carts()

    assert result["expired"] == 4
    for session in (old_open, old_initiated, reminded_long_ago, silent_sibling):
        assert status_of(session) == S.EXPIRED and session.expired_at == timezone.now()
    assert status_of(young_open) == S.CHECKOUT_CREATED
    assert status_of(reminded_late) == S.ABANDONED  # its offer still has an hour to run
    assert status_of(completed) == S.COMPLETED and completed.expired_at is None


@freeze_time(NOW)
def test_request_data_is_removed_after_90_days_whatever_the_status():
    old = [session_at(created=timedelta(days=90, minutes=1), status=status) for status in (S.COMPLETED, S.EXPIRED, S.ABANDONED)]
    recent = session_at(created=timedelta(days=89, hours=23), status=S.COMPLETED)
    assert cleanup_old_abandoned_carts()["stripped"] == 3
    for session in old:
        session.refresh_from_db()
        assert (session.ip_address, session.user_agent, session.referrer) == (None, "", "")
    recent.refresh_from_db()
    assert (recent.ip_address, recent.user_agent, recent.referrer) == ("203.0.113.7", "Mozilla/5.0", "https://mail.example/")
    assert cleanup_old_abandoned_carts()["stripped"] == 0  # already clean rows are not rewritten


@freeze_time(NOW)
def test_after_90_days_an_attempt_that_never_paid_loses_the_buyers_name_and_email():
    abandoned = session_at(created=timedelta(days=90, minutes=1), status=S.ABANDONED, reminded=timedelta(days=90))
    expired = session_at(created=timedelta(days=120), status=S.EXPIRED)
    paid = session_at(created=timedelta(days=90, minutes=1), status=S.COMPLETED)
    young = session_at(created=timedelta(days=89, hours=23), status=S.EXPIRED)
    # An attempt a payment names (a wrong amount, flagged, never completed it) keeps its buyer:
    # refunding it emails them. So does one a subscription came from.
    flagged = session_at(created=timedelta(days=100), status=S.EXPIRED)
    PaymentFactory(site=flagged.site, checkout_session=flagged, flag=Payment.Flag.AMOUNT_MISMATCH)
    hosting = session_at(created=timedelta(days=100), status=S.EXPIRED, kind=CheckoutSession.Kind.SUBSCRIPTION)
    SubscriptionFactory(site=hosting.site, checkout_session=hosting)

    assert cleanup_old_abandoned_carts()["anonymised"] == 2
    for session in (abandoned, expired):
        session.refresh_from_db()
        assert (session.customer_name, session.customer_email) == ("", "")
        assert session.status == S.EXPIRED and session.amount == Decimal("495.00") and session.site_id
    assert abandoned.reminder_sent_at is not None and abandoned.created_at == timezone.now() - timedelta(days=90, minutes=1)
    for session in (paid, young, flagged, hosting):
        session.refresh_from_db()
        assert session.customer_name == "María López" and session.customer_email.endswith("@example.com")
    assert cleanup_old_abandoned_carts()["anonymised"] == 0


@freeze_time(NOW)
def test_the_funnel_and_the_admin_still_work_on_attempts_without_a_buyer(staff_client):
    from checkout.selectors import funnel_metrics

    site = SiteFactory()
    start, end = timezone.now() - timedelta(days=200), timezone.now()
    reminded = session_at(created=timedelta(days=95), status=S.ABANDONED, reminded=timedelta(days=95), site=site)
    session_at(created=timedelta(days=95), status=S.CHECKOUT_CREATED, site=site)
    recovered = session_at(created=timedelta(days=94), status=S.COMPLETED, site=site, recovered_from=reminded,
                           discount_percent=10, amount=Decimal("445.50"))
    PaymentFactory(site=site, checkout_session=recovered, amount=Decimal("445.50"), paid_at=timezone.now() - timedelta(days=94))
    before = funnel_metrics(start=start, end=end)

    cleanup_old_abandoned_carts()
    reminded.refresh_from_db()
    assert reminded.customer_email == "" and reminded.status == S.EXPIRED

    after = funnel_metrics(start=start, end=end)
    assert after == before and (after["started"], after["abandoned"], after["recovered"]) == (2, 1, 1)
    assert after["recovered_revenue"] == Decimal("445.50")
    assert staff_client.get("/admin/checkout/checkoutsession/").status_code == 200
    assert staff_client.get("/admin/checkout/checkoutsession/?q=&status__exact=expired").status_code == 200
    assert staff_client.get("/admin/funnel/?start=2026-05-01&end=2026-11-20").status_code == 200
    change = f"/admin/checkout/checkoutsession/{reminded.pk}/change/"
    assert staff_client.get(change).status_code == 200
    # The email field (and the name) are read-only in admin, so saving a row without them validates.
    assert staff_client.post(change, {"status": S.EXPIRED}).status_code == 302


# --- The emails about an attempt whose buyer is removed ------------------------------------------

def reminded_by_the_scan(capture, *, days_ago: int, **kwargs) -> tuple[CheckoutSession, EmailLog]:
    """An attempt reminded and emailed by the real scan `days_ago` days before NOW."""
    with freeze_time(timezone.now() - timedelta(days=days_ago, minutes=20)):
        session = CheckoutSessionFactory(**kwargs)
    with freeze_time(timezone.now() - timedelta(days=days_ago)), capture(execute=True):
        check_abandoned_carts()
    log = EmailLog.objects.get(checkout_session=session, kind=EmailLog.Kind.RECOVERY_REMINDER)
    assert log.status == EmailLog.Status.SENT and log.to_email == session.customer_email
    return session, log


def email_rows(logs) -> list[dict]:
    return list(EmailLog.objects.filter(pk__in=[log.pk for log in logs]).order_by("pk").values())


@freeze_time(NOW)
def test_the_emails_about_an_attempt_whose_buyer_is_removed_lose_the_name_and_address(
    recurrente_checkouts, django_capture_on_commit_callbacks, preview_site,
):
    from checkout.selectors import funnel_metrics

    gone, gone_log = reminded_by_the_scan(django_capture_on_commit_callbacks, days_ago=95, site=preview_site,
                                          customer_name="Zoë Quintanilla", customer_email="zoe.q@example.com")
    # Another email about the same attempt (a failed one whose error quotes the address).
    other = EmailLog.objects.create(
        kind=EmailLog.Kind.STAFF_ALERT, to_email="zoe.q@example.com", subject="About a checkout", checkout_session=gone,
        status=EmailLog.Status.FAILED, context={"customer_name": "Zoë Quintanilla", "body": "see admin"},
        error="Brevo: recipient zoe.q@example.com refused",
    )
    # Kept: an attempt the buyer later paid for (late completion), and a young one.
    paid, paid_log = reminded_by_the_scan(django_capture_on_commit_callbacks, days_ago=100, site=SiteFactory(),
                                          customer_email="paid@example.com")
    young, young_log = reminded_by_the_scan(django_capture_on_commit_callbacks, days_ago=80, site=SiteFactory(),
                                            customer_email="young@example.com")
    PaymentFactory(site=paid.site, checkout_session=paid)
    CheckoutSession.objects.filter(pk=paid.pk).update(status=S.COMPLETED)
    EmailLog.objects.filter(pk=gone_log.pk).update(status=EmailLog.Status.CLICKED, opened_at=timezone.now() - timedelta(days=94),
                                                  clicked_at=timezone.now() - timedelta(days=94))
    EmailLog.objects.filter(pk=young_log.pk).update(status=EmailLog.Status.OPENED, opened_at=timezone.now() - timedelta(days=79))
    start, end = timezone.now() - timedelta(days=200), timezone.now()
    funnel_before = funnel_metrics(start=start, end=end)
    kept_before = email_rows([paid_log, young_log])
    gone_before = EmailLog.objects.get(pk=gone_log.pk)

    result = cleanup_old_abandoned_carts()

    assert (result["anonymised"], result["emails_scrubbed"]) == (1, 2)
    for log in EmailLog.objects.filter(checkout_session=gone):
        stored = " ".join(str(value) for value in (log.to_email, log.context, log.dedupe_key, log.subject, log.error))
        assert "zoe" not in stored.lower() and "Quintanilla" not in stored and log.to_email == ""
    gone_log.refresh_from_db()
    # The key names no one (a keyed digest), so it stays: one reminder per person and site, still.
    key = recovery_dedupe_key(site_id=gone.site_id, email=gone_before.to_email)
    assert gone_log.dedupe_key == gone_before.dedupe_key == key
    # What is not about the person stays: the offer, the site, the code, the delivery record.
    assert gone_log.context == {key: value for key, value in gone_before.context.items() if key != "customer_name"}
    assert gone_log.context["recovery_code"] == CheckoutSession.objects.get(pk=gone.pk).recovery_code
    assert gone_log.context["site_name"] == "LA Plumbing Pros" and gone_log.context["discounted_price"]
    assert (gone_log.subject, gone_log.status, gone_log.sent_at, gone_log.opened_at, gone_log.clicked_at,
            gone_log.provider_message_id, gone_log.created_at) == (
        gone_before.subject, gone_before.status, gone_before.sent_at, gone_before.opened_at, gone_before.clicked_at,
        gone_before.provider_message_id, gone_before.created_at)
    other.refresh_from_db()
    assert other.context == {"body": "see admin"} and other.error == "Brevo: recipient [address removed] refused"
    assert other.dedupe_key is None  # only the reminder's key named the person
    assert email_rows([paid_log, young_log]) == kept_before
    assert funnel_metrics(start=start, end=end) == funnel_before
    assert funnel_before["reminders_sent"] == 3 and funnel_before["reminder_click_rate"]

    # A second run finds nothing left to change.
    scrubbed = email_rows([gone_log, other])
    with freeze_time(timezone.now() + timedelta(days=1)):
        again = cleanup_old_abandoned_carts()
    assert (again["anonymised"], again["emails_scrubbed"]) == (0, 0)
    assert email_rows([gone_log, other]) == scrubbed

    # The scan never reminds the scrubbed attempt again.
    with django_capture_on_commit_callbacks(execute=True):
        assert check_abandoned_carts() == {"reminded": 0, "closed": 0, "reconciled": 0, "deferred": 0}
    assert EmailLog.objects.filter(checkout_session=gone).count() == 2

    # The same person abandons the same site again: the promise "only reminder" still holds.
    from django.core import mail

    mail.outbox.clear()
    back = CheckoutSessionFactory(site=gone.site, customer_email="zoe.q@example.com")
    with freeze_time(timezone.now() + timedelta(minutes=20)), django_capture_on_commit_callbacks(execute=True):
        check_abandoned_carts()
    assert not EmailLog.objects.filter(checkout_session=back, kind=EmailLog.Kind.RECOVERY_REMINDER).exists()
    assert mail.outbox == [] and EmailLog.objects.filter(dedupe_key=key).count() == 1


@freeze_time(NOW)
def test_a_reminder_of_an_attempt_anonymised_before_the_scrub_existed_is_scrubbed_on_the_next_run(preview_site):
    session = session_at(created=timedelta(days=120), status=S.EXPIRED, reminded=timedelta(days=120), site=preview_site)
    log = EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, to_email=session.customer_email, checkout_session=session,
                                  status=EmailLog.Status.SENT, dedupe_key=f"recovery:{session.site_id}:{session.customer_email}",
                                  context={"customer_name": "María López", "price": "$495.00"})
    CheckoutSession.objects.filter(pk=session.pk).update(customer_name="", customer_email="")

    assert cleanup_old_abandoned_carts()["emails_scrubbed"] == 1
    log.refresh_from_db()
    assert (log.to_email, log.context, log.dedupe_key) == ("", {"price": "$495.00"}, f"recovery:session:{session.pk.hex}")


@freeze_time(NOW)
def test_a_failed_reminder_of_a_scrubbed_attempt_sent_again_is_cancelled_not_sent(django_capture_on_commit_callbacks):
    from django.core import mail

    from webmagic.emails import emails_send_again

    session = session_at(created=timedelta(days=95), status=S.EXPIRED, reminded=timedelta(days=95))
    log = EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, to_email=session.customer_email, checkout_session=session,
                                  status=EmailLog.Status.FAILED, dedupe_key=f"recovery:{session.site_id}:{session.customer_email}",
                                  subject="Still waiting")
    cleanup_old_abandoned_carts()
    with django_capture_on_commit_callbacks(execute=True):
        assert emails_send_again(log_ids=[log.pk]) == [log.pk]
    log.refresh_from_db()
    assert log.status == EmailLog.Status.CANCELLED and log.error == "buyer_removed"
    assert mail.outbox == []


# --- Their unsubscribe links ---------------------------------------------------------------------

def unsubscribe_url(session) -> str:
    from checkout.services.recovery import unsubscribe_token_make

    return f"/checkout/unsubscribe/{unsubscribe_token_make(session_id=session.pk)}/"


@freeze_time(NOW)
def test_an_old_reminders_unsubscribe_link_says_it_expired_once_the_buyer_is_removed(
    recurrente_checkouts, django_capture_on_commit_callbacks, preview_site, client,
):
    from django.test import Client

    gone, _ = reminded_by_the_scan(django_capture_on_commit_callbacks, days_ago=95, site=preview_site,
                                   customer_email="zoe.q@example.com")
    kept, _ = reminded_by_the_scan(django_capture_on_commit_callbacks, days_ago=80, site=SiteFactory(),
                                   customer_email="young@example.com")
    cleanup_old_abandoned_carts()

    response = client.get(unsubscribe_url(gone))
    body = response.content.decode()
    assert response.status_code == 410 and "expired" in body and "<form" not in body
    assert "newer email" in body and "reply to any of our emails" in body
    mail_client = Client(enforce_csrf_checks=True)
    one_click = mail_client.post(unsubscribe_url(gone), "List-Unsubscribe=One-Click",
                                 content_type="application/x-www-form-urlencoded")
    assert one_click.status_code == 410 and "expired" in one_click.content.decode()
    assert client.post(unsubscribe_url(gone)).status_code == 410
    assert not EmailSuppression.objects.exists()

    # A reminder whose attempt is kept unsubscribes as before.
    assert client.get(unsubscribe_url(kept)).status_code == 200
    assert client.post(unsubscribe_url(kept)).status_code == 200
    assert list(EmailSuppression.objects.values_list("email", flat=True)) == ["young@example.com"]


@freeze_time(NOW)
def test_an_unsubscribe_link_still_works_while_only_the_session_lost_its_buyer(client):
    # An attempt anonymised before the email scrub existed, until the next run scrubs its reminder.
    session = session_at(created=timedelta(days=95), status=S.EXPIRED, reminded=timedelta(days=95))
    EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, to_email=session.customer_email, checkout_session=session,
                            status=EmailLog.Status.SENT, dedupe_key=f"recovery:{session.site_id}:{session.customer_email}")
    address = session.customer_email
    CheckoutSession.objects.filter(pk=session.pk).update(customer_name="", customer_email="")

    assert client.get(unsubscribe_url(session)).status_code == 200
    assert client.post(unsubscribe_url(session)).status_code == 200
    assert EmailSuppression.objects.filter(email=address).exists()


@freeze_time(NOW)
def test_cleanup_is_four_bulk_updates_whatever_the_number_of_rows(django_assert_num_queries):
    for n in range(10):
        session = session_at(created=timedelta(days=100))
        for kind in (EmailLog.Kind.RECOVERY_REMINDER, EmailLog.Kind.STAFF_ALERT):
            EmailLog.objects.create(kind=kind, to_email=session.customer_email, checkout_session=session,
                                    dedupe_key=f"{kind}:{n}", context={"customer_name": "María López"})
    with django_assert_num_queries(4):
        result = cleanup_old_abandoned_carts()
    assert result == {"expired": 10, "stripped": 10, "anonymised": 10, "emails_scrubbed": 20}
    assert not EmailLog.objects.exclude(to_email="").exists()


@freeze_time(NOW)
def test_a_late_payment_still_completes_an_expired_session(django_capture_on_commit_callbacks):
    from checkout.ledger import PaymentConfirmation
    from checkout.services.confirmations import payment_confirmed_record

    session = session_at(created=timedelta(hours=50), status=S.ABANDONED, reminded=timedelta(hours=49))
    cleanup_old_abandoned_carts()
    assert status_of(session) == S.EXPIRED
    with django_capture_on_commit_callbacks(execute=True):
        payment_confirmed_record(confirmation=PaymentConfirmation(
            payment_id="pa_verylate", amount_cents=49500, currency="USD", checkout_id=session.recurrente_checkout_id,
        ))
    assert status_of(session) == S.COMPLETED


def schedule_migration():
    return importlib.import_module("checkout.migrations.0004_recovery_periodic_tasks")


def test_the_data_migration_creates_the_beat_schedule_once():
    # Run the migration's own function (transactional tests elsewhere may have flushed its rows):
    # twice, because re-running it (or running it after staff edited the rows) must not duplicate.
    PeriodicTask.objects.filter(task__startswith="checkout.tasks.").delete()
    for _ in range(2):
        schedule_migration().create_schedule(django_apps, None)
    scan = PeriodicTask.objects.get(task="checkout.tasks.check_abandoned_carts")
    assert scan.enabled and scan.interval.every == 5 and scan.interval.period == "minutes" and scan.crontab is None
    cleanup = PeriodicTask.objects.get(task="checkout.tasks.cleanup_old_abandoned_carts")
    assert cleanup.enabled and cleanup.interval is None
    crontab = cleanup.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, crontab.day_of_month, crontab.month_of_year) == ("0", "3", "*", "*", "*")
    assert str(crontab.timezone) == "UTC"
    schedule_migration().delete_schedule(django_apps, None)
    assert not PeriodicTask.objects.filter(task__startswith="checkout.tasks.").exists()


def test_the_migration_is_applied_with_the_app():
    from django.db.migrations.recorder import MigrationRecorder

    assert MigrationRecorder.Migration.objects.filter(app="checkout", name="0004_recovery_periodic_tasks").exists()


def test_the_scheduled_task_names_are_registered_celery_tasks():
    from webmagic.celery import app

    app.loader.import_default_modules()
    migration = schedule_migration()
    assert migration.SCAN_TASK in app.tasks and migration.CLEANUP_TASK in app.tasks


def test_the_migration_turns_reminder_keys_that_held_the_address_into_digests(preview_site):
    migration = importlib.import_module("checkout.migrations.0010_reminder_keys_without_addresses")
    legacy = EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, to_email="maria@example.com",
                                     dedupe_key=f"recovery:{preview_site.pk}:maria@example.com")
    scrubbed = EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, dedupe_key="recovery:session:ab12")
    other = EmailLog.objects.create(kind=EmailLog.Kind.WELCOME, to_email="x@example.com", dedupe_key="welcome:user:1")
    migration.digest_keys(django_apps, None)
    migration.digest_keys(django_apps, None)  # twice is the same
    legacy.refresh_from_db()
    assert legacy.dedupe_key == recovery_dedupe_key(site_id=preview_site.pk, email="maria@example.com")
    assert EmailLog.objects.get(pk=scrubbed.pk).dedupe_key == "recovery:session:ab12"
    assert EmailLog.objects.get(pk=other.pk).dedupe_key == "welcome:user:1"
