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
from checkout.tasks import cleanup_old_abandoned_carts
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


@freeze_time(NOW)
def test_an_old_reminders_unsubscribe_link_still_works_after_the_buyer_was_removed(client):
    from checkout.services.recovery import unsubscribe_token_make

    session = session_at(created=timedelta(days=95), status=S.ABANDONED, reminded=timedelta(days=95))
    EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, to_email=session.customer_email, checkout_session=session,
                            status=EmailLog.Status.SENT, dedupe_key=f"recovery:{session.site_id}:{session.customer_email}")
    address = session.customer_email
    cleanup_old_abandoned_carts()
    session.refresh_from_db()
    assert session.customer_email == ""

    url = f"/checkout/unsubscribe/{unsubscribe_token_make(session_id=session.pk)}/"
    assert client.get(url).status_code == 200
    assert client.post(url).status_code == 200
    assert EmailSuppression.objects.filter(email=address).exists()


@freeze_time(NOW)
def test_cleanup_is_three_bulk_updates_whatever_the_number_of_rows(django_assert_num_queries):
    for _ in range(10):
        session_at(created=timedelta(days=100))
    with django_assert_num_queries(3):
        result = cleanup_old_abandoned_carts()
    assert result == {"expired": 10, "stripped": 10, "anonymised": 10}


@freeze_time(NOW)
def test_a_late_payment_still_completes_an_expired_session(django_capture_on_commit_callbacks):
    from checkout.services.payments import PaymentConfirmation, payment_confirmed_record

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
