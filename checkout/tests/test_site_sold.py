"""Fair when a site sells (checkout/services/site_sold.py): the sale closes the other buyers'
checkouts, their pages say so, and a payment that still arrives is refunded automatically through
the staff refund path, with an email to the buyer and an alert to staff. Recurrente is faked at the
HTTP boundary with its fixtures; webhooks are delivered signed, as Svix sends them."""

import json
from datetime import timedelta

import pytest
import requests
import responses as responses_lib
from django.core import mail
from django.test import Client
from django.utils import timezone

from checkout import tasks
from checkout.models import CheckoutSession, Payment, Refund
from checkout.services import reconcile, recovery, site_sold
from checkout.services.purchase import RequestContext, SiteNotForSale, purchase_start
from checkout.tests.factories import CheckoutSessionFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.models import Site
from webhooks.tests.helpers import payment_event, post_event
from webmagic.models import EmailLog

from .conftest import API

pytestmark = pytest.mark.django_db

WINNER = "maria.lopez@example.com"
LATE = "late.buyer@example.com"
STAFF = "alerts@webmagic.test"  # ADMINS in pytest.ini
RE_ID = "re_3jfrywsf"  # the refund fixture's id


def refund_posts(mock) -> list[dict]:
    return [json.loads(c.request.body) for c in mock.calls if c.request.method == "POST" and c.request.url.endswith("/refunds")]


def refund_answer(status="succeeded") -> dict:
    body = recurrente_fixture("api/create_refund.response.json")
    body["status"], body["id"] = status, RE_ID
    return body


def mails_to(address, contains=""):
    return [m for m in mail.outbox if m.to == [address] and contains in m.subject]


@pytest.fixture
def winner(preview_site):
    return CheckoutSessionFactory(site=preview_site, customer_email=WINNER, customer_name="María López")


@pytest.fixture
def late(preview_site):
    return CheckoutSessionFactory(site=preview_site, customer_email=LATE, customer_name="Ana Late")


def sell(deliver, session, payment_id="pa_winner"):
    deliver(payment_event(session=session, payment_id=payment_id, intent_id=f"in_{payment_id[3:]}"))
    assert Site.objects.get(pk=session.site_id).status == Site.Status.OWNED


# --- 1. The sale closes the other buyers' open checkouts -----------------------------------------

def test_the_sale_closes_every_other_buyers_open_purchase_checkout_and_nothing_else(preview_site, winner, late, deliver):
    initiated = CheckoutSessionFactory(site=preview_site, status=CheckoutSession.Status.INITIATED,
                                       recurrente_checkout_id=None, checkout_url="")
    abandoned = CheckoutSessionFactory(site=preview_site, status=CheckoutSession.Status.ABANDONED,
                                       reminder_sent_at=timezone.now(), recovery_code="SAVE10-ABCDEFGHJK")
    recovery_child = CheckoutSessionFactory(site=preview_site, customer_email=abandoned.customer_email, recovered_from=abandoned,
                                            discount_percent=10)
    hosting = CheckoutSessionFactory(site=preview_site, kind=CheckoutSession.Kind.SUBSCRIPTION)
    expired = CheckoutSessionFactory(site=preview_site, status=CheckoutSession.Status.EXPIRED)
    winners_other_attempt = CheckoutSessionFactory(site=preview_site, customer_email=WINNER)
    other_site = CheckoutSessionFactory()
    reconcile_at = timezone.now() + timedelta(minutes=5)
    CheckoutSession.objects.filter(pk=late.pk).update(next_reconcile_at=reconcile_at)

    sell(deliver, winner)

    closed = set(CheckoutSession.objects.filter(closed_reason=CheckoutSession.ClosedReason.SITE_SOLD).values_list("pk", flat=True))
    assert closed == {late.pk, initiated.pk, abandoned.pk, recovery_child.pk}
    for session in (late, initiated, abandoned, recovery_child):
        before = session.status
        session.refresh_from_db()
        # The status is kept: a checkout still payable at Recurrente stays in the reconciler's view.
        assert session.closed_at is not None and session.status == before
    late.refresh_from_db()
    assert late.next_reconcile_at == reconcile_at
    winner.refresh_from_db()
    assert winner.status == CheckoutSession.Status.COMPLETED and winner.closed_at is None
    for untouched in (hosting, expired, winners_other_attempt, other_site):
        untouched.refresh_from_db()
        assert untouched.closed_at is None and untouched.closed_reason == ""


def test_a_closed_checkout_is_reconciled_until_it_expires(preview_site, winner, late, deliver, recurrente_checkouts):
    sell(deliver, winner)
    CheckoutSession.objects.filter(pk=late.pk).update(next_reconcile_at=timezone.now() - timedelta(seconds=1))

    report = reconcile.reconcile_pass()

    assert late.recurrente_checkout_id in recurrente_checkouts["_seen"]
    assert report.results == {"unpaid": 1}
    late.refresh_from_db()
    assert late.next_reconcile_at is not None  # asked again later: it can still be paid


def test_a_closed_checkout_is_never_reminded(preview_site, winner, late, deliver, recurrente_checkouts, settings):
    sell(deliver, winner)
    CheckoutSession.objects.filter(pk=late.pk).update(created_at=timezone.now() - timedelta(hours=2))
    mail.outbox.clear()

    result = recovery.abandoned_carts_check()

    assert result.reminded == [] and late.pk not in result.closed
    late.refresh_from_db()
    assert late.status == CheckoutSession.Status.CHECKOUT_CREATED and late.reminder_sent_at is None
    assert not EmailLog.objects.filter(kind=EmailLog.Kind.RECOVERY_REMINDER).exists() and mail.outbox == []


def test_a_checkout_created_while_the_site_sold_is_never_handed_to_the_buyer(preview_site, recurrente_api):
    """The sale lands while Recurrente is creating this buyer's checkout (no lock is held then)."""

    def create_while_the_site_sells(request):
        Site.objects.filter(pk=preview_site.pk).update(status=Site.Status.OWNED, owner=CustomerFactory())
        CheckoutSession.objects.filter(customer_email=LATE).update(
            closed_at=timezone.now(), closed_reason=CheckoutSession.ClosedReason.SITE_SOLD)
        return 201, {}, json.dumps({"id": "ch_inflight1", "checkout_url": "https://app.recurrente.com/checkout-session/ch_inflight1"})

    recurrente_api.add_callback(responses_lib.POST, f"{API}/checkouts", callback=create_while_the_site_sells,
                                content_type="application/json")
    with pytest.raises(SiteNotForSale):
        purchase_start(site_id=preview_site.pk, full_name="Ana Late", email=LATE,
                       request_context=RequestContext(ip_address=None, user_agent="", referrer=""))

    session = CheckoutSession.objects.get(customer_email=LATE)
    # Stored all the same, so the reconciler watches it until it expires.
    assert session.recurrente_checkout_id == "ch_inflight1" and session.next_reconcile_at is not None


# --- 2. What the closed checkout's buyer is told --------------------------------------------------

def test_a_closed_checkouts_success_page_says_the_site_was_sold_and_nothing_was_charged(client, winner, late, deliver):
    sell(deliver, winner)

    body = client.get(f"/checkout/success/?session={late.pk}").content.decode()

    assert "LA Plumbing Pros was just sold to someone else" in body and "You have not been charged" in body
    assert "is yours" not in body and "Go to your dashboard" not in body and "Confirming" not in body
    assert client.get(f"/checkout/success/status/?session={late.pk}").json() == {"state": "site_sold"}


def test_a_closed_offers_recovery_link_says_so_and_after_a_payment_that_the_refund_is_on_its_way(
        client, preview_site, winner, deliver, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer(), status=201)
    reminded = CheckoutSessionFactory(site=preview_site, customer_email=LATE, status=CheckoutSession.Status.ABANDONED,
                                      reminder_sent_at=timezone.now() - timedelta(hours=1), recovery_code="SAVE10-ABCDEFGHJK")
    child = CheckoutSessionFactory(site=preview_site, customer_email=LATE, recovered_from=reminded, discount_percent=10,
                                   amount="445.50")
    link = f"/checkout/recover/{recovery.recovery_token_make(session_id=reminded.pk)}/"
    sell(deliver, winner)

    response = client.get(link)
    assert response.status_code == 409
    body = response.content.decode()
    assert "just sold to someone else" in body and "You have not been charged" in body

    deliver(payment_event(session=child, payment_id="pa_child", amount_in_cents=44550))
    body = client.get(link).content.decode()
    assert "started a full refund" in body and "$445.50" in body and "not been charged" not in body


# --- 3. A buyer who still pays is refunded automatically ------------------------------------------

def test_a_payment_after_the_sale_is_recorded_refunded_once_and_the_buyer_and_staff_told(
        client, winner, late, deliver, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer(), status=201)
    sell(deliver, winner)
    mail.outbox.clear()

    deliver(payment_event(session=late, payment_id="pa_late", intent_id="in_late"))

    payment = Payment.objects.get(recurrente_payment_id="pa_late")
    assert payment.flag == Payment.Flag.NEEDS_REFUND and "another customer" in payment.flag_note
    assert payment.status == Payment.Status.REFUNDED and payment.recurrente_refund_id == RE_ID
    assert "refund started automatically" in payment.flag_note
    assert refund_posts(recurrente_api) == [{"intent_id": "in_late"}]
    refund = Refund.objects.get()
    assert (refund.payment, refund.source, refund.requested_by) == (payment, Refund.Source.SITE_SOLD, None)
    assert Site.objects.get(pk=late.site_id).owner.email == WINNER

    [told] = mails_to(LATE, "sold just before your payment")
    html = told.alternatives[0][0]
    for text in (told.body, html):
        assert "Hi Ana," in text and "$495" in text and "pa_late" in text and "5 to 10 business days" in text
    assert len(mails_to(LATE, "Your refund")) == 1  # Recurrente answered succeeded: the confirmation too
    [alert] = mails_to(STAFF, "Refund started automatically")
    assert "pa_late" in alert.subject and RE_ID in alert.body and LATE in alert.body
    assert mails_to(STAFF, "Refund needed") == []

    body = client.get(f"/checkout/success/?session={late.pk}").content.decode()
    assert "just sold to someone else" in body and "started a full refund" in body


def test_staff_see_the_automatic_refund_on_the_payment_in_admin(winner, late, deliver, recurrente_api, staff_client):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer("pending"), status=201)
    sell(deliver, winner)
    deliver(payment_event(session=late, payment_id="pa_late"))
    payment = Payment.objects.get(recurrente_payment_id="pa_late")

    body = staff_client.get(f"/admin/checkout/payment/{payment.pk}/change/").content.decode()

    assert RE_ID in body and "Requested automatically: the site had already been sold" in body
    assert "refund started automatically" in body


def test_duplicate_deliveries_and_a_second_task_run_change_nothing(winner, late, deliver, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer("pending"), status=201)
    sell(deliver, winner)
    legacy = payment_event(session=late, payment_id="pa_late")
    unified = payment_event("intent.succeeded.purchase.json", session=late, payment_id="pa_late")
    first = deliver(legacy)
    outbox = [(m.to, m.subject) for m in mail.outbox]

    deliver(legacy, msg_id=first.msg_id)  # a Svix retry
    deliver(unified)  # the unified twin of the same card payment
    payment = Payment.objects.get(recurrente_payment_id="pa_late")
    assert tasks.refund_site_sold_payment.delay(payment.pk).get() == "not_needed"  # a redelivered task

    assert len(refund_posts(recurrente_api)) == 1 and Refund.objects.count() == 1
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUND_PENDING
    assert [(m.to, m.subject) for m in mail.outbox] == outbox


def test_recurrente_unreachable_is_retried_and_then_left_to_staff_never_doubled(
        winner, late, deliver, recurrente_api, django_capture_on_commit_callbacks):
    # A connect timeout certainly never reached Recurrente (a dropped connection might have).
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", body=requests.ConnectTimeout("connect timed out"))
    sell(deliver, winner)

    deliver(payment_event(session=late, payment_id="pa_late"))

    payment = Payment.objects.get(recurrente_payment_id="pa_late")
    assert payment.status == Payment.Status.SUCCEEDED and not Refund.objects.exists()
    assert len(mails_to(LATE, "sold just before your payment")) == 1  # the buyer is told at once
    assert mails_to(STAFF, "Refund") == []  # a retry is scheduled; nobody is bothered yet

    # The last retry still cannot reach Recurrente: staff are told to refund it themselves.
    with django_capture_on_commit_callbacks(execute=True):
        last = tasks.refund_site_sold_payment.apply(args=[payment.pk], retries=tasks.refund_site_sold_payment.max_retries)
    assert last.get() == "gave_up"
    [alert] = mails_to(STAFF, "Refund needed")
    assert "pa_late" in alert.subject and "Starting the refund automatically failed" in alert.body
    payment.refresh_from_db()
    assert "automatic refund failed" in payment.flag_note and payment.status == Payment.Status.SUCCEEDED

    # Recurrente is back: one refund, and a late retry finds it and does nothing.
    recurrente_api.replace(responses_lib.POST, f"{API}/refunds", json=refund_answer(), status=201)
    tries = len(refund_posts(recurrente_api))
    assert site_sold.site_sold_refund_start(payment_id=payment.pk).outcome == site_sold.AutoRefund.STARTED
    assert site_sold.site_sold_refund_start(payment_id=payment.pk).outcome == site_sold.AutoRefund.NOT_NEEDED
    assert len(refund_posts(recurrente_api)) == tries + 1
    assert Refund.objects.count() == 1 and Payment.objects.get(pk=payment.pk).status == Payment.Status.REFUNDED


def test_an_unclear_answer_is_never_retried_and_staff_are_told(winner, late, deliver, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json={"message": "upstream"}, status=502)
    sell(deliver, winner)

    deliver(payment_event(session=late, payment_id="pa_late"))

    payment = Payment.objects.get(recurrente_payment_id="pa_late")
    assert payment.refund_outcome_unknown_since is not None and len(refund_posts(recurrente_api)) == 1
    [alert] = mails_to(STAFF, "Refund needed")
    assert "outcome is unknown" in alert.body or "outcome unknown" in alert.body
    assert tasks.refund_site_sold_payment.delay(payment.pk).get() == "not_needed"
    assert len(refund_posts(recurrente_api)) == 1


def test_the_owner_paying_twice_is_left_to_staff_as_before(winner, deliver, recurrente_api, preview_site):
    second = CheckoutSessionFactory(site=preview_site, customer_email=WINNER)
    sell(deliver, winner)

    deliver(payment_event(session=second, payment_id="pa_twice"))

    assert Payment.objects.get(recurrente_payment_id="pa_twice").flag == Payment.Flag.NEEDS_REFUND
    assert refund_posts(recurrente_api) == [] and mails_to(WINNER, "sold just before") == []
    assert len(mails_to(STAFF, "Refund needed: payment pa_twice")) == 1


def test_a_broker_that_is_down_leaves_the_refund_to_staff(winner, late, deliver, recurrente_api, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    sell(deliver, winner)
    monkeypatch.setattr(tasks.refund_site_sold_payment, "delay", broker_down)

    deliver(payment_event(session=late, payment_id="pa_late"))

    assert refund_posts(recurrente_api) == []
    [alert] = mails_to(STAFF, "Refund needed")
    assert "could not be queued" in alert.body


def test_the_task_without_a_refund_due_does_nothing(late, recurrente_api):
    payment = Payment.objects.create(recurrente_payment_id="pa_plain", kind=Payment.Kind.PURCHASE, site=late.site,
                                     checkout_session=late, amount=late.amount, currency="USD", paid_at=timezone.now())
    assert tasks.refund_site_sold_payment.delay(payment.pk).get() == "not_needed"
    assert refund_posts(recurrente_api) == []


# --- 4. PostgreSQL: two buyers paying at once ---------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_buyers_paying_at_once_give_one_owner_and_one_automatic_refund(recurrente_api):
    from sites.tests.factories import SiteFactory
    from webmagic.tests.concurrency import run_together

    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer(), status=201)
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros")
    one = CheckoutSessionFactory(site=site, customer_email=WINNER)
    two = CheckoutSessionFactory(site=site, customer_email=LATE)

    def job(session, payment_id):
        return lambda: post_event(Client(), payment_event(session=session, payment_id=payment_id)).status_code

    assert run_together([job(one, "pa_one"), job(two, "pa_two")]) == [200, 200]

    site.refresh_from_db()
    winner = Payment.objects.get(flag="")
    loser = Payment.objects.get(flag=Payment.Flag.NEEDS_REFUND)
    assert site.owner == winner.user and site.purchase_transaction_id == winner.recurrente_payment_id
    assert loser.status == Payment.Status.REFUNDED and Refund.objects.get().payment == loser
    assert len(refund_posts(recurrente_api)) == 1
    loser_email = loser.checkout_session.customer_email
    assert EmailLog.objects.filter(kind=EmailLog.Kind.SITE_SOLD_REFUND, to_email=loser_email).count() == 1
    assert EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT, subject__startswith="Refund started automatically").count() == 1
    # The loser's session was either closed by the sale or paid first; either way it is not the owner's.
    assert CheckoutSession.objects.get(customer_email=loser_email).status == CheckoutSession.Status.COMPLETED
