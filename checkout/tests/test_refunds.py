"""Refunds end to end (DESIGN §8): staff ask in admin, Recurrente's answer is authoritative, pending
refunds are polled until final, failed/voided ones make the payment refundable again, and staff
record refunds made in Recurrente's dashboard with the same effects. Recurrente is faked at the
HTTP boundary with payloads shaped like its fixtures (the refund.* webhook side is in
webhooks/tests/test_purchase.py)."""

import json
import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
import responses as responses_lib
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core import mail
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from checkout.models import Payment, Refund, SandboxCheckout
from checkout.recurrente import RecurrenteValidationError
from checkout.sandbox import SandboxClient, sandbox_checkout_pay
from checkout.services import reconcile, refunds
from checkout.tests.factories import PaymentFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.tests.factories import SiteFactory
from webmagic.models import EmailLog
from webmagic.tests.concurrency import run_together

from .conftest import API

pytestmark = pytest.mark.django_db

PAYMENTS = "/admin/checkout/payment/"
REFUNDS = "/admin/checkout/refund/"
RECORD = "/admin/checkout/refund/record/"
RE_ID = "re_3jfrywsf"  # the fixtures' refund id
BUYER = "maria.lopez@example.com"
STAFF = "alerts@webmagic.test"  # ADMINS in pytest.ini


# --- helpers --------------------------------------------------------------------------------------

def act(client, url, action, ids):
    response = client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def refund_answer(status="succeeded", refund_id=RE_ID) -> dict:
    body = recurrente_fixture("api/create_refund.response.json")
    body["status"], body["id"] = status, refund_id
    return body


def got_refund(refund_id=RE_ID, status="succeeded") -> dict:
    body = recurrente_fixture("api/get_refund.response.json")
    body["status"], body["id"] = status, refund_id
    return body


def posts(mock):
    return [json.loads(c.request.body) for c in mock.calls if c.request.method == "POST" and c.request.url.endswith("/refunds")]


def gets(mock):
    return [c.request.url.rsplit("/", 1)[1] for c in mock.calls if c.request.method == "GET" and "/refunds/" in c.request.url]


def customer_mails():
    return [m for m in mail.outbox if m.to == [BUYER]]


def staff_mails(contains=""):
    return [m for m in mail.outbox if m.to == [STAFF] and contains in m.subject]


def state(payment):
    payment.refresh_from_db()
    return payment.status, payment.recurrente_refund_id


@pytest.fixture
def payment(db):
    buyer = CustomerFactory(email=BUYER, full_name="María López")
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros")
    return PaymentFactory(recurrente_payment_id="pa_ttr2w9xk", recurrente_intent_id="in_y7c2p4lq", site=site, user=buyer)


def pending_refund(payment, refund_id, *, next_check_at):
    """A refund Recurrente answered `pending` to, as payment_refund_request leaves it."""
    Payment.objects.filter(pk=payment.pk).update(status=Payment.Status.REFUND_PENDING, recurrente_refund_id=refund_id)
    return Refund.objects.create(recurrente_refund_id=refund_id, payment=payment, status=Refund.Status.PENDING,
                                 source=Refund.Source.STAFF_REQUEST, currency="USD", next_check_at=next_check_at)


# --- 1. Recurrente answers succeeded --------------------------------------------------------------

def test_admin_refund_answered_succeeded_refunds_at_once_and_tells_customer_and_staff(
        staff_client, recurrente_api, payment, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=recurrente_fixture("api/create_refund.response.json"), status=201)
    with django_capture_on_commit_callbacks(execute=True):
        notes = act(staff_client, PAYMENTS, "refund", [payment.pk])

    assert posts(recurrente_api) == [{"intent_id": "in_y7c2p4lq"}]
    assert notes == [("success", f"Refunded pa_ttr2w9xk ({RE_ID}); the customer was emailed.")]
    payment.refresh_from_db()
    assert (payment.status, payment.recurrente_refund_id) == (Payment.Status.REFUNDED, RE_ID)
    assert payment.refunded_at is not None
    refund = Refund.objects.get()
    assert (refund.recurrente_refund_id, refund.payment, refund.status, refund.source, refund.requested_by) == (
        RE_ID, payment, Refund.Status.SUCCEEDED, Refund.Source.STAFF_REQUEST, staff_client.user)
    assert (refund.customer_refunded_amount, refund.account_refunded_amount, refund.currency) == (
        Decimal("495.00"), Decimal("473.22"), "USD")
    assert refund.finalized_at is not None and refund.next_check_at is None

    assert EmailLog.objects.filter(kind=EmailLog.Kind.REFUND).count() == 1
    assert EmailLog.objects.get(kind=EmailLog.Kind.REFUND).to_email == BUYER
    [sent] = customer_mails()
    html = sent.alternatives[0][0] if sent.alternatives else ""
    for text in (sent.body, html):
        assert "$495" in text and RE_ID in text and "pa_ttr2w9xk" in text
    assert "$495" in sent.subject
    [note] = staff_mails()
    assert "pa_ttr2w9xk" in note.subject and "refunded" in note.subject and RE_ID in note.body


# --- 2. pending, then polled until final ----------------------------------------------------------

def test_pending_refund_is_polled_when_due_until_it_succeeds(staff_client, recurrente_api, payment,
                                                              django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer("pending"), status=201)
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert notes[0][0] == "success" and "pending" in notes[0][1]
    assert state(payment) == (Payment.Status.REFUND_PENDING, RE_ID)
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.PENDING and refund.finalized_at is None
    assert refund.next_check_at - refund.created_at == timedelta(minutes=2)
    assert abs(refund.next_check_at - (timezone.now() + timedelta(minutes=2))) < timedelta(seconds=30)
    assert customer_mails() == []

    with freeze_time(refund.next_check_at - timedelta(seconds=1)):
        early = refunds.refunds_poll()
    assert early.checked == 0 and gets(recurrente_api) == []

    with freeze_time(refund.next_check_at + timedelta(seconds=1)), django_capture_on_commit_callbacks(execute=True):
        polled = refunds.refunds_poll()
    assert gets(recurrente_api) == [RE_ID]
    assert (polled.checked, polled.errors, len(polled.finalized)) == (1, 0, 1)
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED and refund.finalized_at and refund.next_check_at is None
    assert len(customer_mails()) == 1 and RE_ID in customer_mails()[0].body

    with freeze_time(timezone.now() + timedelta(days=1)), django_capture_on_commit_callbacks(execute=True):
        again = refunds.refunds_poll()
    assert again.checked == 0 and gets(recurrente_api) == [RE_ID]
    assert len(customer_mails()) == 1


def test_a_refund_still_pending_is_asked_again_on_the_back_off_schedule(recurrente_api, payment):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer("pending"), status=201)
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="pending"))
    refunds.payment_refund_request(payment_id=payment.pk, staff_user=None)
    refund = Refund.objects.get()
    with freeze_time(refund.created_at + timedelta(minutes=2, seconds=1)):
        refunds.refunds_poll()
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING and refund.next_check_at == refund.created_at + timedelta(minutes=5)
    assert state(payment) == (Payment.Status.REFUND_PENDING, RE_ID)


def test_the_reconcile_pass_polls_pending_refunds(recurrente_api, payment, django_capture_on_commit_callbacks):
    refund = pending_refund(payment, RE_ID, next_check_at=timezone.now() - timedelta(minutes=1))
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        report = reconcile.reconcile_pass()
    assert gets(recurrente_api) == [RE_ID]
    assert (report.run.refunds_checked, report.run.refunds_finalized, report.run.errors) == (1, 1, 0)
    assert RE_ID in report.run.findings
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    assert len(customer_mails()) == 1


# --- 3. failed / voided ---------------------------------------------------------------------------

@pytest.mark.parametrize("final", [Refund.Status.FAILED, Refund.Status.VOIDED])
def test_a_failed_or_voided_refund_makes_the_payment_refundable_again(staff_client, recurrente_api, payment, final,
                                                                      django_capture_on_commit_callbacks):
    answers = [refund_answer("pending", "re_first001"), refund_answer("pending", "re_second01")]
    recurrente_api.add_callback(responses_lib.POST, f"{API}/refunds", content_type="application/json",
                                callback=lambda request: (201, {}, json.dumps(answers.pop(0))))
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/re_first001", json=got_refund("re_first001", final))
    act(staff_client, PAYMENTS, "refund", [payment.pk])
    first = Refund.objects.get()

    with freeze_time(first.next_check_at + timedelta(seconds=1)), django_capture_on_commit_callbacks(execute=True):
        polled = refunds.refunds_poll()
    assert polled.finalized == [f"refund re_first001: pending → {final}"]
    first.refresh_from_db()
    assert first.status == final and first.finalized_at is not None and first.next_check_at is None
    assert state(payment) == (Payment.Status.SUCCEEDED, "")
    [alert] = staff_mails("re_first001")
    assert final in alert.subject and "pa_ttr2w9xk" in alert.subject and "refunded again" in alert.body
    assert customer_mails() == [] and not EmailLog.objects.filter(kind=EmailLog.Kind.REFUND).exists()

    notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert notes[0][0] == "success"
    assert len(posts(recurrente_api)) == 2
    assert sorted(Refund.objects.filter(payment=payment).values_list("recurrente_refund_id", "status")) == [
        ("re_first001", final), ("re_second01", Refund.Status.PENDING)]
    assert state(payment) == (Payment.Status.REFUND_PENDING, "re_second01")


# --- 4. poll faults -------------------------------------------------------------------------------

FAULTS = {
    "500": {"status": 500, "json": {"message": "internal error"}},
    "429": {"status": 429, "json": {"message": "too many requests"}},
    "timeout": {"body": requests.exceptions.ConnectTimeout()},
    "not json": {"status": 200, "body": "<html>Bad gateway</html>", "content_type": "text/html"},
    "no id": {"status": 200, "json": {"status": "succeeded", "customer_refunded_amount_in_cents": 49500}},
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_poll_that_cannot_read_a_refund_changes_nothing_and_goes_on(recurrente_api, payment, fault,
                                                                      django_capture_on_commit_callbacks):
    now = timezone.now()
    broken = pending_refund(payment, "re_broken01", next_check_at=now - timedelta(minutes=10))
    other = PaymentFactory(recurrente_payment_id="pa_other001", user=CustomerFactory(email="ana@example.com"))
    fine = pending_refund(other, "re_fine0001", next_check_at=now - timedelta(minutes=5))
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/re_broken01", **FAULTS[fault])
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/re_fine0001", json=got_refund("re_fine0001", "succeeded"))
    before = Refund.objects.filter(pk=broken.pk).values("status", "checks", "finalized_at", "next_check_at").get()

    with django_capture_on_commit_callbacks(execute=True):
        result = refunds.refunds_poll(now=now)

    assert gets(recurrente_api) == ["re_broken01", "re_fine0001"]
    assert (result.checked, result.errors) == (2, 1)
    broken.refresh_from_db()
    assert (broken.status, broken.checks, broken.finalized_at) == (Refund.Status.PENDING, before["checks"], None)
    assert broken.next_check_at > before["next_check_at"] and broken.next_check_at > now
    assert broken.last_error
    assert state(payment) == (Payment.Status.REFUND_PENDING, "re_broken01")
    assert customer_mails() == []
    fine.refresh_from_db()
    assert fine.status == Refund.Status.SUCCEEDED
    assert state(other) == (Payment.Status.REFUNDED, "re_fine0001")
    assert [m.to for m in mail.outbox if m.to != [STAFF]] == [["ana@example.com"]]


def test_a_poll_answer_about_another_refund_is_not_applied(recurrente_api, payment):
    refund = pending_refund(payment, "re_asked001", next_check_at=timezone.now() - timedelta(minutes=1))
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/re_asked001", json=got_refund("re_someone1", "succeeded"))
    refunds.refunds_poll()
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert state(payment) == (Payment.Status.REFUND_PENDING, "re_asked001")


# --- 5. accepted without a refund id --------------------------------------------------------------

def test_a_refund_accepted_without_an_id_waits_for_staff_to_record_it(staff_client, recurrente_api, payment,
                                                                      django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json={"status": "succeeded"}, status=201)
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert notes[0][0] == "warning" and "gave no refund id" in notes[0][1] and "record it" in notes[0][1]
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUND_PENDING and payment.recurrente_refund_id == ""
    assert "without a refund id" in payment.flag_note
    assert not Refund.objects.exists()
    [alert] = staff_mails("has no refund id")
    assert "pa_ttr2w9xk" in alert.subject and "Record a dashboard refund" in alert.body
    assert customer_mails() == []

    assert act(staff_client, PAYMENTS, "refund", [payment.pk])[0][0] == "warning"  # not asked twice
    assert len(posts(recurrente_api)) == 1

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(RECORD, {"payment": "pa_ttr2w9xk", "refund_id": RE_ID}, follow=True)
    assert response.redirect_chain[-1][0] == REFUNDS
    assert gets(recurrente_api) == [RE_ID]
    refund = Refund.objects.get()
    assert (refund.payment, refund.source, refund.status, refund.requested_by) == (
        payment, Refund.Source.DASHBOARD, Refund.Status.SUCCEEDED, staff_client.user)
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    assert len(customer_mails()) == 1


# --- 6. recording a dashboard refund --------------------------------------------------------------

def test_recording_a_dashboard_refund_refunds_the_payment(staff_client, recurrente_api, payment,
                                                          django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    assert staff_client.get(RECORD + "?payment=pa_ttr2w9xk").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(RECORD, {"payment": " pa_ttr2w9xk ", "refund_id": f" {RE_ID} "}, follow=True)
    assert response.redirect_chain[-1][0] == REFUNDS
    notes = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert notes == [("success", f"Recorded {RE_ID} (succeeded) for pa_ttr2w9xk.")]
    refund = Refund.objects.get()
    assert (refund.recurrente_refund_id, refund.payment, refund.source, refund.status) == (
        RE_ID, payment, Refund.Source.DASHBOARD, Refund.Status.SUCCEEDED)
    assert refund.customer_refunded_amount == Decimal("495.00") and refund.finalized_at is not None
    payment.refresh_from_db()
    assert (payment.status, payment.recurrente_refund_id) == (Payment.Status.REFUNDED, RE_ID) and payment.refunded_at
    [sent] = customer_mails()
    assert RE_ID in sent.body and "$495" in sent.body


def test_recording_links_an_unmatched_refund_a_webhook_left(staff_client, recurrente_api, payment,
                                                            django_capture_on_commit_callbacks):
    refunds.refund_event_record(data=recurrente_fixture("events/refund.create.json"))
    unmatched = Refund.objects.get()
    assert (unmatched.payment, unmatched.source) == (None, Refund.Source.WEBHOOK)
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(RECORD, {"payment": "pa_ttr2w9xk", "refund_id": RE_ID}, follow=True)
    assert response.redirect_chain[-1][0] == REFUNDS
    refund = Refund.objects.get()  # linked, not duplicated
    assert refund.pk == unmatched.pk and refund.payment == payment and refund.status == Refund.Status.SUCCEEDED
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    assert len(customer_mails()) == 1


BAD_RECORDINGS = {
    # name: (payment reference, refund id, Recurrente's answer to GET or None if it must not be asked, error shown)
    "malformed id": ("pa_ttr2w9xk", "3jfrywsf", None, "starts with re_"),
    "malformed id with a path": ("pa_ttr2w9xk", "re_3jf/../x", None, "starts with re_"),
    "unknown payment": ("pa_nobody01", RE_ID, None, "No payment with this Recurrente id."),
    "unknown at Recurrente": ("pa_ttr2w9xk", RE_ID, {"status": 404, "json": {"message": "Not found"}},
                              f"Recurrente does not know {RE_ID}"),
    "Recurrente down": ("pa_ttr2w9xk", RE_ID, {"status": 503, "json": {"message": "unavailable"}},
                        f"Could not read {RE_ID} from Recurrente"),
    "recorded for another payment": ("pa_ttr2w9xk", "re_taken001", None, "re_taken001 is already recorded for payment pa_other001"),
}


@pytest.mark.parametrize("case", BAD_RECORDINGS)
def test_recording_problems_are_shown_on_the_form_and_nothing_is_written(staff_client, recurrente_api, payment, case,
                                                                         django_capture_on_commit_callbacks):
    reference, refund_id, answer, error = BAD_RECORDINGS[case]
    other = PaymentFactory(recurrente_payment_id="pa_other001", status=Payment.Status.REFUNDED, recurrente_refund_id="re_taken001")
    Refund.objects.create(recurrente_refund_id="re_taken001", payment=other, status=Refund.Status.SUCCEEDED,
                          source=Refund.Source.STAFF_REQUEST, currency="USD")
    if answer:
        recurrente_api.add(responses_lib.GET, f"{API}/refunds/{refund_id}", **answer)
    refunds_before = list(Refund.objects.values())
    payments_before = list(Payment.objects.order_by("pk").values())

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(RECORD, {"payment": reference, "refund_id": refund_id})

    assert response.status_code == 200  # the form again, not the redirect of a success
    page = response.content.decode()
    assert error in page, page
    assert ("errornote" in page) or ("errorlist" in page)
    assert gets(recurrente_api) == ([refund_id] if answer else [])
    assert list(Refund.objects.values()) == refunds_before
    assert list(Payment.objects.order_by("pk").values()) == payments_before
    assert not EmailLog.objects.exists() and mail.outbox == []


def test_view_only_staff_cannot_record_a_refund(client, django_user_model, recurrente_api, payment):
    viewer = django_user_model.objects.create_user("viewer@webmagic.test", "a long enough password 1", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_refund", "view_payment"]))
    client.force_login(viewer)
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    assert client.get(REFUNDS).status_code == 200  # they may look

    for response in (client.get(RECORD), client.post(RECORD, {"payment": "pa_ttr2w9xk", "refund_id": RE_ID})):
        assert response.status_code == 302 and response["Location"] == REFUNDS
    assert gets(recurrente_api) == []
    assert not Refund.objects.exists()
    assert state(payment) == (Payment.Status.SUCCEEDED, "")


# --- 7. recording twice ---------------------------------------------------------------------------

def test_recording_the_same_refund_twice_emails_the_customer_once(staff_client, recurrente_api, payment,
                                                                  django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = staff_client.post(RECORD, {"payment": "pa_ttr2w9xk", "refund_id": RE_ID}, follow=True)
        assert response.redirect_chain[-1][0] == REFUNDS
    assert gets(recurrente_api) == [RE_ID, RE_ID]
    assert Refund.objects.count() == 1
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    assert EmailLog.objects.filter(kind=EmailLog.Kind.REFUND).count() == 1
    assert len(customer_mails()) == 1
    assert len(staff_mails("refunded")) == 1


# --- 8. two staff at once (PostgreSQL) ------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_refunding_one_payment_at_once_ask_recurrente_once(recurrente_api, django_user_model):
    payment = PaymentFactory(recurrente_payment_id="pa_race0001", recurrente_intent_id="in_race0001",
                             user=CustomerFactory(email=BUYER))
    staff = [django_user_model.objects.create_superuser(f"staff{i}@webmagic.test", "correct horse battery staple")
             for i in range(2)]
    one_click_done = threading.Event()

    def create(request):
        # Hold Recurrente's answer until the other click has returned: if both clicks got this far,
        # neither returns, and both requests are sent after the timeout (the test then fails).
        one_click_done.wait(timeout=10)
        return 201, {}, json.dumps(recurrente_fixture("api/create_refund.response.json"))

    recurrente_api.add_callback(responses_lib.POST, f"{API}/refunds", callback=create, content_type="application/json")

    def click(user):
        def job():
            browser = Client()
            browser.force_login(user)
            try:
                return act(browser, PAYMENTS, "refund", [payment.pk])
            finally:
                one_click_done.set()
        return job

    results = run_together([click(user) for user in staff])

    assert len(posts(recurrente_api)) == 1
    assert Refund.objects.count() == 1
    refund = Refund.objects.get()
    assert refund.payment_id == payment.pk and refund.status == Refund.Status.SUCCEEDED
    assert refund.requested_by in staff
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    assert sorted(notes[0][0] for notes in results) == ["success", "warning"]
    assert EmailLog.objects.filter(kind=EmailLog.Kind.REFUND).count() == 1


# --- 9. the sandbox -------------------------------------------------------------------------------

def test_the_sandbox_refunds_at_once_and_sends_no_webhook(monkeypatch, django_capture_on_commit_callbacks):
    from checkout import sandbox

    created = SandboxClient().create_checkout({
        "items": [{"name": "Website", "amount_in_cents": 49500, "currency": "USD", "quantity": 1, "charge_type": "one_time"}],
        "success_url": "http://x/", "cancel_url": "http://x/", "metadata": {"kind": "purchase"},
    })
    checkout = sandbox_checkout_pay(checkout_id=created["id"])  # its deliveries wait for a commit that never comes
    assert checkout.status == SandboxCheckout.Status.PAID
    payment = PaymentFactory(recurrente_payment_id=checkout.payment_id, recurrente_intent_id=checkout.intent_id,
                             recurrente_checkout_id=checkout.id, user=CustomerFactory(email=BUYER))

    sent, delivered = [], []
    monkeypatch.setattr(sandbox, "sandbox_send_later", lambda **kwargs: sent.append(kwargs))
    monkeypatch.setattr(sandbox.sandbox_deliver, "delay", lambda *args: delivered.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        result = refunds.payment_refund_request(payment_id=payment.pk, staff_user=None)

    refund = result.refund
    assert refund.status == Refund.Status.SUCCEEDED and re.fullmatch(r"re_sbx[0-9a-f]{12}", refund.recurrente_refund_id)
    assert (refund.customer_refunded_amount, refund.account_refunded_amount, refund.currency) == (
        Decimal("495.00"), Decimal("473.22"), "USD")
    assert state(payment) == (Payment.Status.REFUNDED, refund.recurrente_refund_id)
    assert len(customer_mails()) == 1

    answer = SandboxClient().get_refund(refund.recurrente_refund_id)
    assert (answer["id"], answer["status"]) == (refund.recurrente_refund_id, "succeeded")
    for kwargs in ({"intent_id": checkout.intent_id}, {"payment_intent_id": checkout.payment_id}):
        with pytest.raises(RecurrenteValidationError) as refused:
            SandboxClient().create_refund(**kwargs)
        assert refused.value.status == 422
    assert SandboxCheckout.objects.get(pk=checkout.pk).refund_id == refund.recurrente_refund_id
    assert sent == [] and delivered == []


# --- Races and late news (found in review) --------------------------------------------------------

def test_a_late_answer_about_an_old_failed_refund_does_not_reopen_a_payment_with_a_newer_refund(
    recurrente_api, payment, django_capture_on_commit_callbacks
):
    old = Refund.objects.create(recurrente_refund_id="re_oldfail1", payment=payment, status=Refund.Status.FAILED,
                                source=Refund.Source.STAFF_REQUEST, currency="USD", finalized_at=timezone.now())
    # A newer refund went through without an id (refund_pending, waiting for staff to record it).
    Payment.objects.filter(pk=payment.pk).update(status=Payment.Status.REFUND_PENDING, recurrente_refund_id="")
    alerts_before = len(staff_mails())
    with django_capture_on_commit_callbacks(execute=True):
        refunds.refund_event_record(data={"id": old.recurrente_refund_id, "status": "failed"})  # a replay
    assert state(payment) == (Payment.Status.REFUND_PENDING, "")
    assert len(staff_mails()) == alerts_before


def test_a_refund_event_racing_the_staff_request_for_it_still_refunds_the_payment(
    recurrente_api, payment, monkeypatch, django_capture_on_commit_callbacks
):
    """The event's lookup ran before staff's row committed: its insert then meets that row, which
    is already linked to the payment, and must be applied as matched."""
    pending_refund(payment, RE_ID, next_check_at=timezone.now() + timedelta(minutes=2))
    monkeypatch.setattr(refunds, "_refund_and_payment_lock", lambda *, refund_id: (None, None))
    with django_capture_on_commit_callbacks(execute=True):
        outcome = refunds.refund_event_record(data=got_refund(RE_ID, "succeeded"))
    assert outcome == "recorded"
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    assert len(customer_mails()) == 1
    assert not staff_mails("matches no payment")


def test_a_refund_recurrente_accepted_but_we_could_not_record_names_its_id_to_staff(
    staff_client, recurrente_api, payment, monkeypatch, django_capture_on_commit_callbacks
):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer("succeeded"), status=201)

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(refunds, "_refund_state_apply", broken)
    with django_capture_on_commit_callbacks(execute=True):
        notes = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert notes[0][0] == "error" and RE_ID in notes[0][1] and "do not refund again" in notes[0][1]
    assert state(payment) == (Payment.Status.SUCCEEDED, "") and not Refund.objects.exists()  # rolled back
    [alert] = staff_mails("accepted but not recorded")
    assert RE_ID in alert.body


def test_check_now_asks_recurrente_about_the_selected_refunds_only(staff_client, recurrente_api, payment):
    other_payment = PaymentFactory(recurrente_payment_id="pa_other0001")
    selected = pending_refund(payment, "re_selected1", next_check_at=timezone.now() + timedelta(hours=1))
    overdue = pending_refund(other_payment, "re_overdue1", next_check_at=timezone.now() - timedelta(hours=1))
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/re_selected1", json=got_refund("re_selected1", "succeeded"))
    notes = act(staff_client, REFUNDS, "check_now", [selected.pk])
    assert gets(recurrente_api) == ["re_selected1"]
    assert "1 pending refund(s): 1 became final" in notes[0][1]
    overdue.refresh_from_db()
    assert overdue.status == Refund.Status.PENDING  # not selected: left for the reconciler


# --- Admin lists ------------------------------------------------------------------------------------

def test_refund_and_reconcile_run_lists_are_read_only_with_a_fixed_number_of_queries(staff_client):
    from checkout.models import ReconcileRun
    from webmagic.tests.admin_queries import assert_constant_queries

    counter = {"n": 0}

    def refunds_and_runs(n):
        for _ in range(n):
            counter["n"] += 1
            payment = PaymentFactory(user=CustomerFactory())
            Refund.objects.create(recurrente_refund_id=f"re_list{counter['n']:05d}", payment=payment, source=Refund.Source.STAFF_REQUEST,
                                  status=Refund.Status.SUCCEEDED, requested_by=staff_client.user, currency="USD")
            ReconcileRun.objects.create(started_at=timezone.now())

    assert_constant_queries(staff_client, REFUNDS, refunds_and_runs)
    assert_constant_queries(staff_client, "/admin/checkout/reconcilerun/", lambda n: None)
    refund = Refund.objects.first()
    run = ReconcileRun.objects.first()
    assert staff_client.get(f"{REFUNDS}add/").status_code == 403
    assert staff_client.get(f"{REFUNDS}{refund.pk}/delete/").status_code == 403  # money records stay
    assert staff_client.get(f"/admin/checkout/reconcilerun/{run.pk}/delete/").status_code == 403
    assert staff_client.post(f"/admin/checkout/reconcilerun/{run.pk}/change/", {}).status_code == 403
