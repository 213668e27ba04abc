"""Staff admin for checkout: refunds through Recurrente, cancelling hosting, "send reminder now",
read-only personal data, flagged payments first, and a fixed number of queries per page."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses as responses_lib
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.utils import timezone
from urllib3.exceptions import MaxRetryError, NewConnectionError

from checkout.models import CheckoutSession, Payment, Refund, Subscription
from checkout.services import refunds
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory, SubscriptionFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webmagic.models import EmailLog, EmailSuppression
from webmagic.tests.admin_queries import assert_constant_queries

from .conftest import API

pytestmark = pytest.mark.django_db

PAYMENTS = "/admin/checkout/payment/"
SUBSCRIPTIONS = "/admin/checkout/subscription/"
SESSIONS = "/admin/checkout/checkoutsession/"


def act(client, url, action, ids):
    response = client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def refunds_posted(mock):
    return [json.loads(c.request.body) for c in mock.calls if c.request.method == "POST" and c.request.url.endswith("/refunds")]


# --- Payments: refund -------------------------------------------------------------------------

@pytest.fixture
def refund_api(recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json={"id": "re_3jfrywsf", "status": "pending"}, status=201)
    return recurrente_api


def test_refund_action_posts_the_intent_id_and_marks_the_payment_refund_pending(staff_client, refund_api):
    payment = PaymentFactory(recurrente_payment_id="pa_ttr2w9xk", recurrente_intent_id="in_y7c2p4lq",
                             flag=Payment.Flag.NEEDS_REFUND, flag_note="site already sold")
    notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert refunds_posted(refund_api) == [{"intent_id": "in_y7c2p4lq"}]
    assert refund_api.calls[0].request.headers["X-SECRET-KEY"] == "sk_test_fake"
    payment.refresh_from_db()
    assert (payment.status, payment.recurrente_refund_id) == (Payment.Status.REFUND_PENDING, "re_3jfrywsf")
    assert notes[0][0] == "success" and "pa_ttr2w9xk" in notes[0][1] and "pending" in notes[0][1]
    refund = Refund.objects.get()
    assert (refund.payment, refund.status, refund.requested_by) == (payment, Refund.Status.PENDING, staff_client.user)


def test_refund_without_an_intent_id_sends_the_payment_id(staff_client, refund_api):
    payment = PaymentFactory(recurrente_payment_id="pa_old00001", recurrente_intent_id="")
    act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert refunds_posted(refund_api) == [{"payment_intent_id": "pa_old00001"}]


def test_refund_of_a_payment_whose_intent_id_others_share_sends_the_payment_id(staff_client, refund_api):
    renewal = PaymentFactory(recurrente_payment_id="pa_renewal01", recurrente_intent_id="in_shared01")
    PaymentFactory(recurrente_payment_id="pa_first0001", recurrente_intent_id="in_shared01")
    act(staff_client, PAYMENTS, "refund", [renewal.pk])
    assert refunds_posted(refund_api) == [{"payment_intent_id": "pa_renewal01"}]


def test_a_422_shows_recurrentes_message_and_changes_nothing(staff_client, recurrente_api):
    body = {"message": "El pago ya no puede ser reembolsado", "errors": {"intent_id": ["ha expirado"]}}
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=body, status=422)
    payment = PaymentFactory(recurrente_intent_id="in_expired01", flag=Payment.Flag.NEEDS_REFUND)
    before = Payment.objects.filter(pk=payment.pk).values().get()
    notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert notes[0][0] == "error"
    assert "HTTP 422" in notes[0][1] and "El pago ya no puede ser reembolsado" in notes[0][1] and "ha expirado" in notes[0][1]
    assert Payment.objects.filter(pk=payment.pk).values().get() == before
    assert cache.get(f"refund-in-flight:{payment.pk}") is None  # a later retry is not blocked


def test_recurrente_unreachable_changes_nothing(staff_client, recurrente_api):
    # The connection was never made, so nothing can have happened (a 503 or a timeout may have
    # been acted on: test_refund_outcome_unknown.py).
    refused = requests.ConnectionError(MaxRetryError(None, "/api/refunds", NewConnectionError(None, "Connection refused")))
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", body=refused)
    payment = PaymentFactory(recurrente_intent_id="in_x0000001")
    notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert notes[0][0] == "error" and "Nothing was changed" in notes[0][1]
    payment.refresh_from_db()
    assert (payment.status, payment.recurrente_refund_id) == (Payment.Status.SUCCEEDED, "")


def test_a_payment_recurrente_does_not_know_says_so(staff_client, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", status=404, json={"message": "Not found"})
    payment = PaymentFactory(recurrente_intent_id="in_unknown01")
    notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert notes[0][0] == "error" and "does not know in_unknown01" in notes[0][1]
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED


def test_refunding_twice_is_refused_without_asking_recurrente(staff_client, refund_api):
    pending = PaymentFactory(status=Payment.Status.REFUND_PENDING, recurrente_refund_id="re_1")
    done = PaymentFactory(status=Payment.Status.REFUNDED)
    fresh = PaymentFactory(recurrente_intent_id="in_fresh001")
    notes = act(staff_client, PAYMENTS, "refund", [pending.pk, done.pk, fresh.pk])
    assert refunds_posted(refund_api) == [{"intent_id": "in_fresh001"}]
    assert sorted(level for level, _ in notes) == ["success", "warning", "warning"]
    act(staff_client, PAYMENTS, "refund", [fresh.pk])  # the same payment again
    assert len(refunds_posted(refund_api)) == 1


def test_a_refund_already_in_flight_is_refused(refund_api):
    payment = PaymentFactory(recurrente_intent_id="in_busy0001")
    cache.add(f"refund-in-flight:{payment.pk}", 1, timeout=60)
    with pytest.raises(refunds.RefundRefused, match="right now"):
        refunds.payment_refund_request(payment_id=payment.pk, staff_user=None)
    assert refunds_posted(refund_api) == []


def test_a_refund_event_that_arrived_during_the_call_is_not_undone(refund_api, monkeypatch):
    """The refund.create webhook (if any) can beat POST /refunds' answer home: it is stored as
    unmatched, then the answer links it; the final state is never moved back to pending."""
    payment = PaymentFactory(recurrente_intent_id="in_race0001", recurrente_payment_id="pa_race0001")
    real = refunds.recurrente_client

    def client_then_webhook():
        client = real()
        original = client.create_refund

        def create_refund(**kwargs):
            answer = original(**kwargs)
            refunds.refund_event_record(data={"id": "re_3jfrywsf", "status": "succeeded"})
            return answer

        monkeypatch.setattr(client, "create_refund", create_refund)
        return client

    monkeypatch.setattr(refunds, "recurrente_client", client_then_webhook)
    refunds.payment_refund_request(payment_id=payment.pk, staff_user=None)
    payment.refresh_from_db()
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.SUCCEEDED and refund.payment == payment
    assert payment.status == Payment.Status.REFUNDED


def test_flagged_payments_still_holding_money_come_first(staff_client):
    now = timezone.now()
    newest = PaymentFactory(recurrente_payment_id="pa_newest", paid_at=now)
    flagged = PaymentFactory(recurrente_payment_id="pa_flagged", paid_at=now - timedelta(days=3), flag=Payment.Flag.AMOUNT_MISMATCH)
    handled = PaymentFactory(recurrente_payment_id="pa_handled", paid_at=now - timedelta(days=1),
                             flag=Payment.Flag.NEEDS_REFUND, status=Payment.Status.REFUNDED)
    body = staff_client.get(PAYMENTS).content.decode()
    order = [m for m in re.findall(r"pa_(?:newest|flagged|handled)", body)]
    assert list(dict.fromkeys(order)) == ["pa_flagged", "pa_newest", "pa_handled"]
    filtered = staff_client.get(PAYMENTS + "?attention=yes").content.decode()
    assert "pa_flagged" in filtered and "pa_newest" not in filtered
    assert newest and flagged and handled


# --- Subscriptions: cancel --------------------------------------------------------------------

SU = "su_9xk2p7qv"


@pytest.fixture
def live_subscription(db):
    owner = CustomerFactory(email="maria.lopez@example.com")
    site = SiteFactory(status=Site.Status.ACTIVE, owner=owner)
    return SubscriptionFactory(site=site, user=owner, recurrente_subscription_id=SU,
                               current_period_end=datetime(2026, 11, 21, tzinfo=UTC))


def test_cancel_action_deletes_at_recurrente_and_keeps_the_site_live(staff_client, recurrente_api, live_subscription):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json=recurrente_fixture("api/cancel_subscription.response.json"))
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=recurrente_fixture("api/get_subscription.response.json"))
    notes = act(staff_client, SUBSCRIPTIONS, "cancel", [live_subscription.pk])
    assert [c.request.method for c in recurrente_api.calls if "subscriptions" in c.request.url][0] == "DELETE"
    live_subscription.refresh_from_db()
    assert live_subscription.cancel_requested_at is not None
    assert live_subscription.current_period_end == datetime(2026, 12, 21, 15, 2, 17, 636000, tzinfo=UTC)
    assert Site.objects.get(pk=live_subscription.site_id).status == Site.Status.ACTIVE
    assert notes[0][0] == "success" and "2026-12-21" in notes[0][1]

    notes = act(staff_client, SUBSCRIPTIONS, "cancel", [live_subscription.pk])
    assert notes[0][0] == "warning" and "already cancelled" in notes[0][1]
    assert len([c for c in recurrente_api.calls if c.request.method == "DELETE"]) == 1


def test_cancel_refused_by_recurrente_changes_nothing(staff_client, recurrente_api, live_subscription):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json={"message": "No se pudo cancelar"}, status=422)
    notes = act(staff_client, SUBSCRIPTIONS, "cancel", [live_subscription.pk])
    assert notes[0][0] == "error" and "No se pudo cancelar" in notes[0][1]
    live_subscription.refresh_from_db()
    assert live_subscription.cancel_requested_at is None


def test_cancel_of_a_subscription_that_is_not_billing_is_refused(staff_client, recurrente_api, live_subscription):
    ended = SubscriptionFactory(site=live_subscription.site, status=Subscription.Status.CANCELLED)
    notes = act(staff_client, SUBSCRIPTIONS, "cancel", [ended.pk])
    assert notes[0][0] == "warning" and "not the billing subscription" in notes[0][1]
    assert len(recurrente_api.calls) == 0


# --- Checkout sessions ------------------------------------------------------------------------

@pytest.fixture
def checkout_status(recurrente_api):
    answers = {}

    def get(request):
        checkout_id = request.url.rsplit("/", 1)[1]
        if answers.get(checkout_id) == "paid":
            body = recurrente_fixture("api/get_checkout.paid.response.json")
            body["payment"]["id"] = f"pa_{checkout_id[3:]}"
        else:
            body = recurrente_fixture("api/get_checkout.unpaid.response.json")
        body["id"] = checkout_id
        return 200, {}, json.dumps(body)

    recurrente_api.add_callback(responses_lib.GET, re.compile(rf"{re.escape(API)}/checkouts/\w+"), callback=get,
                                content_type="application/json")
    return answers


def test_send_reminder_now_does_not_wait_for_the_delay(staff_client, checkout_status):
    session = CheckoutSessionFactory()  # created just now: the scan would wait 15 minutes
    notes = act(staff_client, SESSIONS, "send_reminder_now", [session.pk])
    assert notes == [("success", f"Session {session.pk} ({session.customer_email}): reminder queued.")]
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.ABANDONED and session.reminder_sent_at and session.recovery_code
    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER, checkout_session=session).count() == 1


def test_send_reminder_now_keeps_one_reminder_per_person_and_site(staff_client, checkout_status):
    first = CheckoutSessionFactory(customer_email="ana@example.com")
    second = CheckoutSessionFactory(customer_email="ana@example.com", site=first.site)
    notes = act(staff_client, SESSIONS, "send_reminder_now", [first.pk, second.pk])
    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER).count() == 1
    assert [level for level, _ in notes].count("success") == 1
    later = CheckoutSessionFactory(customer_email="ana@example.com", site=first.site)
    notes = act(staff_client, SESSIONS, "send_reminder_now", [later.pk])
    assert notes[0][0] == "warning" and "already reminded" in notes[0][1]
    assert EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER).count() == 1


def test_send_reminder_now_respects_unsubscribe_sold_sites_and_payments(staff_client, checkout_status):
    EmailSuppression.objects.create(email="gone@example.com")
    unsubscribed = CheckoutSessionFactory(customer_email="gone@example.com")
    sold = CheckoutSessionFactory(site=SiteFactory(status=Site.Status.OWNED, owner=CustomerFactory()))
    paid = CheckoutSessionFactory(recurrente_checkout_id="ch_paid0001")
    checkout_status["ch_paid0001"] = "paid"
    done = CheckoutSessionFactory(status=CheckoutSession.Status.COMPLETED)
    notes = dict((str(pk), (level, text)) for pk in [unsubscribed.pk, sold.pk, paid.pk, done.pk]
                 for level, text in act(staff_client, SESSIONS, "send_reminder_now", [pk]))
    assert "unsubscribed" in notes[str(unsubscribed.pk)][1]
    assert "no longer for sale" in notes[str(sold.pk)][1]
    assert "paid" in notes[str(paid.pk)][1]
    assert notes[str(done.pk)][0] == "error"
    assert not EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER).exists()
    paid.refresh_from_db()
    assert paid.status == CheckoutSession.Status.COMPLETED  # reconciled as the webhook would have


def test_checkout_session_personal_data_is_read_only_and_nothing_can_be_added(staff_client):
    session = CheckoutSessionFactory(ip_address="203.0.113.9", user_agent="Mozilla/5.0 test", referrer="https://ref.example/")
    page = staff_client.get(f"{SESSIONS}{session.pk}/change/").content.decode()
    for field in ("customer_name", "customer_email", "ip_address", "user_agent", "referrer"):
        assert f'name="{field}"' not in page
    assert "203.0.113.9" in page and "Mozilla/5.0 test" in page
    assert staff_client.get(f"{SESSIONS}add/").status_code == 403
    changelist = staff_client.get(SESSIONS + "?status__exact=checkout_created&reminder_sent_at__isempty=1")
    assert changelist.status_code == 200 and session.customer_email in changelist.content.decode()


# --- Query counts -----------------------------------------------------------------------------

def _sessions(n):
    for _ in range(n):
        CheckoutSessionFactory(site=SiteFactory(), user=CustomerFactory(password=None))


def _payments(n):
    for i in range(n):
        PaymentFactory(user=CustomerFactory(password=None), flag=Payment.Flag.NEEDS_REFUND if i % 2 else Payment.Flag.NONE)


def _subscriptions(n):
    for _ in range(n):
        SubscriptionFactory(user=CustomerFactory(password=None))


@pytest.mark.parametrize("url,make", [(SESSIONS, _sessions), (PAYMENTS, _payments), (SUBSCRIPTIONS, _subscriptions)])
def test_changelists_run_the_same_number_of_queries_for_3_and_30_rows(staff_client, url, make):
    assert_constant_queries(staff_client, url, make)
