"""The staff funnel against a hand-built dataset whose figures are counted by hand below."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from checkout.models import CheckoutSession, Payment
from checkout.selectors import funnel_metrics
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory
from sites.tests.factories import SiteFactory
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db
S = CheckoutSession.Status


@pytest.fixture
def dataset():
    now = timezone.now()
    site = SiteFactory()
    mk = CheckoutSessionFactory
    # 10 original attempts in range:
    initiated = mk(site=site, status=S.INITIATED, recurrente_checkout_id=None)  # never reached Recurrente
    direct = [mk(site=site, status=S.COMPLETED) for _ in range(3)]  # paid straight away
    open_ = [mk(site=site) for _ in range(2)]  # checkout created, still open
    abandoned = [mk(site=site, status=S.ABANDONED, reminder_sent_at=now) for _ in range(3)]  # reminded
    late = mk(site=site, status=S.COMPLETED, reminder_sent_at=now)  # reminded, then paid the original
    # 1 recovery checkout (from abandoned[0]) that was paid, with a 10 % discount:
    recovery = mk(site=site, status=S.COMPLETED, recovered_from=abandoned[0], discount_percent=10, amount=Decimal("445.50"))
    # Outside the range (40 days ago): ignored.
    old = mk(site=site, status=S.COMPLETED)
    CheckoutSession.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=40))
    for session in direct:
        PaymentFactory(site=site, checkout_session=session, amount=Decimal("495.00"))
    PaymentFactory(site=site, checkout_session=late, amount=Decimal("495.00"))
    PaymentFactory(site=site, checkout_session=recovery, amount=Decimal("445.50"))
    PaymentFactory(site=site, checkout_session=old, amount=Decimal("495.00"), paid_at=now - timedelta(days=40))
    PaymentFactory(site=site, amount=Decimal("495.00"), flag=Payment.Flag.NEEDS_REFUND)  # not revenue
    PaymentFactory(site=site, amount=Decimal("495.00"), status=Payment.Status.REFUNDED)  # not revenue
    PaymentFactory(site=site, amount=Decimal("95.00"), kind=Payment.Kind.SUBSCRIPTION)  # hosting, not purchase
    for status, opened, clicked in [("sent", True, True), ("opened", True, False), ("delivered", False, False),
                                    ("failed", False, False), ("cancelled", False, False), ("queued", False, False)]:
        EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, to_email="x@example.com", status=status,
                                opened_at=now if opened else None, clicked_at=now if clicked else None)
    return {"initiated": initiated, "open": open_}


def test_funnel_figures_match_the_hand_count(dataset):
    now = timezone.now()
    m = funnel_metrics(start=now - timedelta(days=30), end=now + timedelta(minutes=1))
    assert m["started"] == 10  # 1 initiated + 3 direct + 2 open + 3 abandoned + 1 late
    assert m["checkouts_created"] == 9
    assert m["completed"] == 5  # 3 direct + 1 late + 1 recovery checkout
    assert m["conversion_rate"] == 50.0
    assert m["abandoned"] == 4  # 3 abandoned + 1 late (all reminded)
    assert m["recovered"] == 2  # the late completion and the paid recovery checkout
    assert m["recovery_rate"] == 50.0
    assert m["reminders_sent"] == 3 and m["reminders_failed"] == 1
    assert m["reminder_open_rate"] == pytest.approx(66.7) and m["reminder_click_rate"] == pytest.approx(33.3)
    assert m["revenue"] == Decimal("2425.50")  # 4 × 495 + 445.50
    assert m["recovered_revenue"] == Decimal("940.50")  # 495 (late) + 445.50 (recovery)


def test_empty_range_has_no_rates():
    now = timezone.now()
    m = funnel_metrics(start=now - timedelta(days=1), end=now)
    assert m["started"] == 0 and m["conversion_rate"] is None and m["revenue"] == Decimal("0.00")


def test_funnel_page_renders_figures_and_chart(staff_client, dataset, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        response = staff_client.get("/admin/funnel/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Checkout funnel" in body and "<svg" in body and "polyline" in body
    assert "$2,425.50" in body and "50.0 %" in body


def test_funnel_page_validates_the_range(staff_client, db):
    response = staff_client.get("/admin/funnel/?start=2026-05-10&end=2026-05-01")
    assert response.status_code == 200
    assert "start date must be on or before" in response.content.decode()
    assert staff_client.get("/admin/funnel/?start=garbage").status_code == 200


def test_funnel_page_is_staff_only(client, db):
    response = client.get("/admin/funnel/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
