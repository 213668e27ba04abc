import logging
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from checkout.models import CheckoutSession, Payment
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory
from customers.models import CustomerUser
from customers.tests.factories import CustomerFactory
from sites.models import Site
from webhooks.models import WebhookEvent
from webmagic.models import EmailLog

from .helpers import payment_event

pytestmark = pytest.mark.django_db


def _emails(kind):
    return list(EmailLog.objects.filter(kind=kind))


def test_a_paid_purchase_makes_the_buyer_the_owner(purchase_session, deliver):
    deliver(payment_event(session=purchase_session, payment_id="pa_card1"))

    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PROCESSED and event.attempts == 1
    site = Site.objects.get(pk=purchase_session.site_id)
    user = CustomerUser.objects.get(email="maria.lopez@example.com")
    assert site.status == Site.Status.OWNED
    assert site.owner == user
    assert site.purchase_transaction_id == "pa_card1"
    assert site.purchase_amount == Decimal("495.00")
    assert site.purchased_at is not None
    session = CheckoutSession.objects.get(pk=purchase_session.pk)
    assert session.status == CheckoutSession.Status.COMPLETED and session.completed_at and session.user == user
    payment = Payment.objects.get()
    assert (payment.recurrente_payment_id, payment.kind) == ("pa_card1", "purchase")
    assert (payment.amount, payment.currency) == (Decimal("495.00"), "USD")
    assert (payment.user, payment.checkout_session_id, payment.flag) == (user, purchase_session.pk, "")
    assert (payment.payment_method, payment.card_last4, payment.recurrente_intent_id) == ("card", "4242", "in_y7c2p4lq")
    assert not user.has_usable_password() and not user.email_verified
    assert user.full_name == "María López" and user.recurrente_customer_id == "us_4hz8mq2c"


def test_a_payer_using_another_email_does_not_attach_their_recurrente_identity(purchase_session, deliver):
    deliver(payment_event(session=purchase_session, payment_id="pa_card1", email="someone.else@example.com"))
    user = CustomerUser.objects.get(email="maria.lopez@example.com")  # the account is always our buyer's
    assert user.recurrente_customer_id == ""


def test_the_new_owner_gets_a_welcome_with_a_set_password_link_and_a_receipt(purchase_session, deliver):
    deliver(payment_event(session=purchase_session, payment_id="pa_card1"))

    welcome, receipt = _emails(EmailLog.Kind.WELCOME), _emails(EmailLog.Kind.RECEIPT)
    assert len(welcome) == 1 and len(receipt) == 1
    assert welcome[0].status == receipt[0].status == EmailLog.Status.SENT
    assert welcome[0].dedupe_key == f"welcome:user:{welcome[0].user_id}"
    assert receipt[0].dedupe_key == "receipt:pa_card1"
    assert "token" not in str(welcome[0].context) and "set-password" not in str(welcome[0].context)
    by_subject = {m.subject: m for m in mail.outbox}
    message = by_subject["LA Plumbing Pros is yours — set your password"]
    assert message.to == ["maria.lopez@example.com"]
    html = message.alternatives[0][0]
    assert "http://testserver/portal/set-password/" in message.body and "http://testserver/portal/set-password/" in html
    assert "http://testserver/sites/la-plumbing-pros/" in message.body
    receipt_message = by_subject["Your receipt: LA Plumbing Pros — $495"]
    assert "pa_card1" in receipt_message.body and "Card ending 4242" in receipt_message.body
    assert "$495" in receipt_message.alternatives[0][0]


def test_customer_supplied_names_are_escaped_in_emails(deliver, purchase_session):
    CheckoutSession.objects.filter(pk=purchase_session.pk).update(customer_name="<script>alert(1)</script>")
    Site.objects.filter(pk=purchase_session.site_id).update(business_name="Tom & <b>Jerry</b>")
    deliver(payment_event(session=purchase_session, payment_id="pa_card1"))
    html = "".join(m.alternatives[0][0] for m in mail.outbox if m.to == ["maria.lopez@example.com"])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>Jerry</b>" not in html and "Tom &amp; &lt;b&gt;Jerry&lt;/b&gt;" in html


def test_the_legacy_and_unified_events_of_one_payment_record_one_payment(purchase_session, deliver):
    deliver(payment_event("payment_intent.succeeded.purchase.json", session=purchase_session, payment_id="pa_pair"))
    deliver(payment_event("intent.succeeded.purchase.json", session=purchase_session, payment_id="pa_pair"))

    assert WebhookEvent.objects.count() == 2
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}
    assert Payment.objects.count() == 1
    assert len(_emails(EmailLog.Kind.WELCOME)) == 1 and len(_emails(EmailLog.Kind.RECEIPT)) == 1


def test_the_unified_event_alone_fulfils_and_records_the_intent_id(purchase_session, deliver):
    deliver(payment_event("intent.succeeded.purchase.json", session=purchase_session, payment_id="pa_uni", intent_id="in_uni"))
    payment = Payment.objects.get()
    assert (payment.recurrente_payment_id, payment.recurrente_intent_id) == ("pa_uni", "in_uni")
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.OWNED


def test_a_svix_retry_of_the_same_delivery_changes_nothing(purchase_session, deliver):
    payload = payment_event(session=purchase_session, payment_id="pa_card1")
    deliver(payload, msg_id="msg_same")
    deliver(payload, msg_id="msg_same")
    assert WebhookEvent.objects.count() == 1 and Payment.objects.count() == 1
    assert EmailLog.objects.filter(kind__in=[EmailLog.Kind.WELCOME, EmailLog.Kind.RECEIPT]).count() == 2


def test_a_known_email_in_any_capitalisation_joins_the_existing_account(purchase_session, deliver):
    existing = CustomerFactory(email="maria.lopez@example.com")
    CheckoutSession.objects.filter(pk=purchase_session.pk).update(customer_email="Maria.Lopez@Example.COM")
    deliver(payment_event(session=purchase_session, payment_id="pa_card1"))

    assert CustomerUser.objects.count() == 1
    assert Site.objects.get(pk=purchase_session.site_id).owner == existing
    # They already have a password: a receipt, no second welcome with a set-password link.
    assert _emails(EmailLog.Kind.WELCOME) == []
    assert [log.to_email for log in _emails(EmailLog.Kind.RECEIPT)] == ["maria.lopez@example.com"]


def test_a_second_site_for_the_same_customer_joins_the_same_account(purchase_session, deliver):
    deliver(payment_event(session=purchase_session, payment_id="pa_first"))
    other = CheckoutSessionFactory(customer_email="maria.lopez@example.com")
    deliver(payment_event(session=other, payment_id="pa_second"))

    user = CustomerUser.objects.get()
    assert set(Site.objects.filter(owner=user).values_list("pk", flat=True)) == {purchase_session.site_id, other.site_id}
    assert len(_emails(EmailLog.Kind.WELCOME)) == 1  # once per account
    assert len(_emails(EmailLog.Kind.RECEIPT)) == 2


def test_a_bank_transfer_is_in_progress_then_completes(purchase_session, deliver):
    deliver(payment_event("bank_transfer_intent.pending.json", session=purchase_session))
    session = CheckoutSession.objects.get(pk=purchase_session.pk)
    assert session.payment_in_progress_at is not None
    assert session.status == CheckoutSession.Status.CHECKOUT_CREATED
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.PREVIEW

    deliver(payment_event("bank_transfer_intent.succeeded.json", session=purchase_session, payment_id="pa_bank1"))
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.COMPLETED
    payment = Payment.objects.get()
    assert (payment.recurrente_payment_id, payment.payment_method) == ("pa_bank1", "bank_transfer_receiver")
    assert Site.objects.get(pk=purchase_session.site_id).owner.email == "maria.lopez@example.com"
    receipt = next(m for m in mail.outbox if m.subject.startswith("Your receipt"))
    assert "Bank transfer" in receipt.body


def test_a_declined_card_records_the_reason_and_keeps_the_session_open(purchase_session, deliver):
    deliver(payment_event("payment_intent.failed.json", session=purchase_session))
    session = CheckoutSession.objects.get(pk=purchase_session.pk)
    assert session.status == CheckoutSession.Status.CHECKOUT_CREATED
    assert session.last_failure_reason.startswith("Tu banco ha rechazado")
    assert session.last_failure_at is not None
    assert Payment.objects.count() == 0
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED

    # The buyer retries on the same page and pays: the same session completes.
    deliver(payment_event(session=purchase_session, payment_id="pa_retry"))
    assert CheckoutSession.objects.get(pk=purchase_session.pk).status == CheckoutSession.Status.COMPLETED


def test_a_decline_for_a_checkout_we_do_not_know_is_ignored(deliver, db):
    deliver(payment_event("payment_intent.failed.json", checkout_id="ch_notours"))
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED and "unknown_checkout" in event.error


@pytest.mark.parametrize("status", [CheckoutSession.Status.ABANDONED, CheckoutSession.Status.EXPIRED])
def test_a_late_payment_still_completes_an_abandoned_or_expired_session(purchase_session, deliver, status):
    CheckoutSession.objects.filter(pk=purchase_session.pk).update(status=status)
    deliver(payment_event(session=purchase_session, payment_id="pa_late"))
    assert CheckoutSession.objects.get(pk=purchase_session.pk).status == CheckoutSession.Status.COMPLETED
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.OWNED


@pytest.mark.parametrize("amount, currency", [(100, "USD"), (49400, "USD"), (49500, "GTQ")])
def test_a_wrong_amount_or_currency_is_flagged_not_fulfilled(purchase_session, deliver, amount, currency):
    deliver(payment_event(session=purchase_session, payment_id="pa_odd", amount_in_cents=amount, currency=currency))

    payment = Payment.objects.get()
    assert payment.flag == Payment.Flag.AMOUNT_MISMATCH and str(amount) in payment.flag_note
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.PREVIEW
    assert CheckoutSession.objects.get(pk=purchase_session.pk).status == CheckoutSession.Status.CHECKOUT_CREATED
    assert CustomerUser.objects.count() == 0
    alert = EmailLog.objects.get(kind=EmailLog.Kind.STAFF_ALERT)
    assert alert.to_email == "alerts@webmagic.test" and "pa_odd" in alert.subject


def test_a_site_already_sold_is_never_given_a_second_owner(purchase_session, deliver):
    first_owner = CustomerFactory(email="first@example.com")
    Site.objects.filter(pk=purchase_session.site_id).update(status=Site.Status.OWNED, owner=first_owner)

    deliver(payment_event(session=purchase_session, payment_id="pa_late_buyer"))

    site = Site.objects.get(pk=purchase_session.site_id)
    assert site.owner == first_owner and site.status == Site.Status.OWNED
    payment = Payment.objects.get()
    assert payment.flag == Payment.Flag.NEEDS_REFUND and "another customer" in payment.flag_note
    assert CheckoutSession.objects.get(pk=purchase_session.pk).status == CheckoutSession.Status.COMPLETED
    alert = EmailLog.objects.get(kind=EmailLog.Kind.STAFF_ALERT)
    assert alert.subject == "Refund needed: payment pa_late_buyer for la-plumbing-pros"
    assert "maria.lopez@example.com" in alert.context["body"]
    assert not CustomerUser.objects.filter(email="maria.lopez@example.com").exists()
    assert _emails(EmailLog.Kind.WELCOME) == [] and _emails(EmailLog.Kind.RECEIPT) == []


def test_two_paid_checkouts_for_one_site_give_one_owner_and_one_refund(purchase_session, deliver):
    rival = CheckoutSessionFactory(site=purchase_session.site, customer_email="rival@example.com")
    deliver(payment_event(session=purchase_session, payment_id="pa_a"))
    deliver(payment_event(session=rival, payment_id="pa_b"))

    site = Site.objects.get(pk=purchase_session.site_id)
    assert site.owner.email == "maria.lopez@example.com"
    flags = dict(Payment.objects.values_list("recurrente_payment_id", "flag"))
    assert flags == {"pa_a": "", "pa_b": Payment.Flag.NEEDS_REFUND}


def test_metadata_is_a_cross_check_only(purchase_session, deliver, caplog):
    payload = payment_event(session=purchase_session, payment_id="pa_meta")
    payload["checkout"]["metadata"]["checkout_session_id"] = "00000000-0000-0000-0000-000000000000"
    with caplog.at_level(logging.WARNING, logger="checkout.services.payments"):
        deliver(payload)
    assert "metadata names session 00000000" in caplog.text
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.OWNED


def test_a_payment_for_an_unknown_checkout_fails_and_is_retried_then_alerts(deliver, retries_run_inline, db):
    from webhooks.services import MAX_ATTEMPTS

    deliver(payment_event(checkout_id="ch_unknown", payment_id="pa_orphan"))
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.FAILED
    assert "CheckoutSessionNotFound" in event.error and event.attempts == MAX_ATTEMPTS
    assert event.next_retry_at is None
    assert EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT, subject__contains=f"event {event.pk}").exists()
    assert Payment.objects.count() == 0


def test_a_malformed_but_signed_payment_is_marked_failed_with_the_reason(purchase_session, deliver):
    payload = payment_event(session=purchase_session, payment_id="pa_x")
    payload["amount_in_cents"] = "49500"
    deliver(payload)
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.FAILED and "amount_in_cents" in event.error
    assert event.attempts == 1 and event.next_retry_at is None  # retrying cannot fix a payload
    assert Payment.objects.count() == 0


def _refund_for(payment, *, status="pending", refund_id="re_3jfrywsf"):
    from checkout.models import Refund

    return Refund.objects.create(recurrente_refund_id=refund_id, payment=payment, status=status,
                                 source=Refund.Source.STAFF_REQUEST, currency="USD")


def test_a_refund_event_is_matched_by_its_refund_id_and_refunds_the_payment(deliver, db):
    payment = PaymentFactory(recurrente_payment_id="pa_ttr2w9xk", status=Payment.Status.REFUND_PENDING,
                             recurrente_refund_id="re_3jfrywsf", user=CustomerFactory(email="maria.lopez@example.com"))
    _refund_for(payment)
    deliver(payment_event("refund.create.json"))  # Recurrente's refund object: no payment reference

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED and payment.refunded_at is not None
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    assert EmailLog.objects.filter(kind="refund").count() == 1
    deliver(payment_event("refund.create.json"))  # a second delivery changes nothing
    assert EmailLog.objects.filter(kind="refund").count() == 1


def test_a_refund_event_never_guesses_the_payment_from_other_ids(deliver, db):
    payment = PaymentFactory(recurrente_payment_id="pa_ttr2w9xk", recurrente_intent_id="in_y7c2p4lq")
    payload = payment_event("refund.create.json")
    payload["payment_intent"] = {"id": "pa_ttr2w9xk"}  # even if a payment id did come along
    deliver(payload)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED


def test_an_unmatched_refund_event_is_stored_for_staff_and_not_retried(deliver, db):
    from checkout.models import Refund

    deliver(payment_event("refund.create.json"))
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PROCESSED and event.next_retry_at is None
    refund = Refund.objects.get()
    assert (refund.recurrente_refund_id, refund.payment, refund.source) == ("re_3jfrywsf", None, Refund.Source.WEBHOOK)
    assert refund.customer_refunded_amount == Decimal("495.00")
    alert = EmailLog.objects.get(kind=EmailLog.Kind.STAFF_ALERT)
    assert "re_3jfrywsf" in alert.subject
    deliver(payment_event("refund.create.json"))  # Svix redelivers under a new id: still one row, one alert
    assert Refund.objects.count() == 1 and EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT).count() == 1


def test_a_refund_event_without_a_status_asks_recurrente_instead_of_trusting_it(deliver, db):
    from checkout.models import Refund

    payment = PaymentFactory(recurrente_payment_id="pa_ttr2w9xk")
    refund = _refund_for(payment)
    payload = payment_event("refund.create.json")
    del payload["status"]
    deliver(payload)
    payment.refresh_from_db()
    refund.refresh_from_db()
    assert payment.status == Payment.Status.REFUND_PENDING and refund.status == Refund.Status.PENDING
    assert refund.next_check_at is not None and refund.next_check_at <= timezone.now()  # polled at once


def test_a_failed_refund_event_makes_the_payment_refundable_again(deliver, db):
    payment = PaymentFactory(recurrente_payment_id="pa_ttr2w9xk", status=Payment.Status.REFUND_PENDING,
                             recurrente_refund_id="re_3jfrywsf")
    _refund_for(payment)
    payload = payment_event("refund.create.json")
    payload["status"] = "failed"
    deliver(payload)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.recurrente_refund_id == ""
    assert "failed" in EmailLog.objects.get(kind=EmailLog.Kind.STAFF_ALERT).subject


def test_a_dispute_flags_the_payment_it_names_and_alerts_staff(deliver, db):
    payment = PaymentFactory(recurrente_payment_id="pa_ttr2w9xk")
    deliver({"event_type": "dispute.created", "id": "dp_1", "payment": {"id": "pa_ttr2w9xk"}, "live_mode": False})
    payment.refresh_from_db()
    assert payment.flag == Payment.Flag.DISPUTED and "dispute.created" in payment.flag_note
    assert "Dispute on payment pa_ttr2w9xk" in EmailLog.objects.get(kind=EmailLog.Kind.STAFF_ALERT).subject
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED


def test_a_dispute_naming_nothing_of_ours_still_alerts_staff(deliver, db):
    deliver({"event_type": "dispute.lost", "id": "dp_2", "payment": {"id": "pa_nobody"}, "live_mode": False})
    assert "cannot match" in EmailLog.objects.get(kind=EmailLog.Kind.STAFF_ALERT).subject
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED


@pytest.mark.parametrize("live_mode", [True])
def test_events_from_the_other_mode_are_ignored(purchase_session, deliver, live_mode):
    payload = payment_event(session=purchase_session, payment_id="pa_live")
    payload["live_mode"] = live_mode
    deliver(payload)
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED and "live_mode" in event.error
    assert Payment.objects.count() == 0
    assert Site.objects.get(pk=purchase_session.site_id).status == Site.Status.PREVIEW


def test_a_live_deployment_ignores_test_events(purchase_session, deliver, settings):
    settings.RECURRENTE_LIVE_MODE = True
    deliver(payment_event("intent.succeeded.purchase.json", session=purchase_session, payment_id="pa_t"))
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.IGNORED
    assert Payment.objects.count() == 0
