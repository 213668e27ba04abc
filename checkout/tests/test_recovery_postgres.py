"""PostgreSQL-only: the due query uses the partial index, and concurrent scans send one email each."""

import json
import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
import responses as responses_lib
from django.core import mail
from django.db import connection, connections, transaction
from django.utils import timezone

from checkout.models import CheckoutSession
from checkout.services import recovery
from checkout.tasks import check_abandoned_carts
from checkout.tests.conftest import API
from checkout.tests.factories import CheckoutSessionFactory
from checkout.tests.fixtures import recurrente_fixture
from sites.tests.factories import SiteFactory
from webmagic.models import EmailLog

pytestmark = pytest.mark.postgres


@pytest.mark.django_db
def test_the_due_query_uses_the_partial_index_not_a_table_scan():
    """20,000 finished attempts spread over two months (as a real table grows), a few open ones."""
    site = SiteFactory()
    now = timezone.now()
    CheckoutSession.objects.bulk_create([
        CheckoutSession(
            site=site, customer_name="Paid", customer_email=f"buyer{i}@example.com", amount=495,
            status=CheckoutSession.Status.COMPLETED if i % 10 else CheckoutSession.Status.ABANDONED,
            reminder_sent_at=None if i % 10 else now, recurrente_checkout_id=f"ch_done{i:06d}",
        )
        for i in range(20_000)
    ], batch_size=2_000)
    with connection.cursor() as cursor:
        # created_at is auto_now_add; spread it in insertion order, three minutes apart.
        cursor.execute(
            """UPDATE checkout_checkoutsession AS s SET created_at = %s - interval '3 minutes' * (20000 - t.n)
               FROM (SELECT id, row_number() OVER (ORDER BY recurrente_checkout_id) AS n FROM checkout_checkoutsession) AS t
               WHERE s.id = t.id""",
            [now - timedelta(days=1)],
        )
    for minutes in (90, 60, 40, 20, 5):
        session = CheckoutSessionFactory(site=site)
        CheckoutSession.objects.filter(pk=session.pk).update(created_at=now - timedelta(minutes=minutes))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE checkout_checkoutsession")

    due = recovery.recovery_due_sessions(now=now)  # the exact queryset the task iterates
    plan = str(due.explain())

    assert "checkout_abandoned_scan_idx" in plan, plan
    assert "Seq Scan on checkout_checkoutsession" not in plan, plan
    assert len(list(due)) == 4  # the one created 5 minutes ago is not due yet


@pytest.fixture
def unpaid_everywhere():
    """Recurrente says "unpaid" for every checkout (thread-safe: the mock patches requests globally)."""
    from django.test import override_settings

    def get(request):
        body = recurrente_fixture("api/get_checkout.unpaid.response.json")
        body["id"] = request.url.rsplit("/", 1)[1]
        return 200, {}, json.dumps(body)

    with override_settings(RECURRENTE_SANDBOX=False, RECURRENTE_SECRET_KEY="sk_test_fake", RECURRENTE_API_URL=API), \
            responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses_lib.GET, re.compile(rf"{re.escape(API)}/checkouts/\w+"), callback=get,
                          content_type="application/json")
        yield mock


def run_at_once(target, n):
    barrier = threading.Barrier(n)
    errors = []

    def worker():
        try:
            barrier.wait()
            target()
        except Exception as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_ticks_send_one_reminder_per_person_and_site(unpaid_everywhere):
    sites = [SiteFactory(), SiteFactory()]
    people = ["maria@example.com", "juan@example.com", "ana@example.com"]
    for site in sites:
        for email in people:
            for minutes in (60, 40, 20):  # three abandoned attempts each
                session = CheckoutSessionFactory(site=site, customer_email=email)
                CheckoutSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))

    run_at_once(check_abandoned_carts, 6)

    # The safety property, whatever the interleaving: never two reminders for one person and site.
    logs = EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER)
    keys = list(logs.values_list("dedupe_key", flat=True))
    assert len(keys) == len(set(keys)) and len(mail.outbox) == len(keys) <= 6
    # Liveness: under heavy load a parallel run once left one group for the next tick (SKIP LOCKED
    # never waits); one more tick must complete the round, still once each.
    check_abandoned_carts()
    assert logs.count() == 6
    assert sorted(logs.values_list("dedupe_key", flat=True)) == sorted(
        recovery.recovery_dedupe_key(site_id=site.pk, email=email) for site in sites for email in people
    )
    assert all(status == EmailLog.Status.SENT for status in logs.values_list("status", flat=True))
    assert len(mail.outbox) == 6
    assert Counter(m.to[0] for m in mail.outbox) == {email: 2 for email in people}
    # Every attempt is closed, exactly one per person and site carries the reminder (the claim).
    assert set(CheckoutSession.objects.values_list("status", flat=True)) == {CheckoutSession.Status.ABANDONED}
    assert CheckoutSession.objects.filter(reminder_sent_at__isnull=False).count() == 6
    # A further tick finds nothing to do.
    assert check_abandoned_carts()["reminded"] == 0 and len(mail.outbox) == 6


@pytest.mark.django_db(transaction=True)
def test_the_same_session_is_claimed_once_by_concurrent_claims(unpaid_everywhere):
    """Many workers reach the claim step for the same rows at the same moment."""
    site = SiteFactory()
    sessions = []
    for _ in range(3):
        session = CheckoutSessionFactory(site=site, customer_email="maria@example.com")
        CheckoutSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=30))
        sessions.append(session.pk)

    def claim():
        recovery._person_claim(site_id=site.pk, email="maria@example.com", session_ids=sessions,
                               now=timezone.now(), result=recovery.ScanResult())

    run_at_once(claim, 8)

    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER).count() == 1 and len(mail.outbox) == 1
    assert CheckoutSession.objects.filter(reminder_sent_at__isnull=False).count() == 1
    assert CheckoutSession.objects.filter(status=CheckoutSession.Status.ABANDONED).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_row_locked_by_a_payment_is_skipped_not_waited_for(unpaid_everywhere):
    """While a webhook holds the session (fulfilling it), the scan skips it instead of blocking."""
    session = CheckoutSessionFactory()
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=30))
    locked, release, done = threading.Event(), threading.Event(), {}

    def webhook():
        with transaction.atomic():
            CheckoutSession.objects.select_for_update().get(pk=session.pk)
            locked.set()
            release.wait(10)
            CheckoutSession.objects.filter(pk=session.pk).update(status=CheckoutSession.Status.COMPLETED)
        connections.close_all()

    holder = threading.Thread(target=webhook)
    holder.start()
    locked.wait(10)
    try:
        done["result"] = check_abandoned_carts()  # must return while the lock is held
    finally:
        release.set()
        holder.join(10)
    assert done["result"]["reminded"] == 0 and mail.outbox == []
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.COMPLETED and session.reminder_sent_at is None
