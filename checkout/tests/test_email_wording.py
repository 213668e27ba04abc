"""The words of checkout's emails live in their templates: the code passes facts (how it was paid,
whether a refund was for hosting, the prices), never sentences. A row queued before the wording
moved (its context carried `item`, `payment_method`, `next_step`, `button_label`) still renders
as it did, so "Send again" on an old failed email says the same thing."""

from decimal import Decimal

import pytest
from django.utils import timezone

from checkout import emails
from checkout.models import Payment, Refund
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory
from customers.tests.factories import CustomerFactory
from webmagic.emails import email_render
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db


def paid(**kwargs) -> Payment:
    buyer = CustomerFactory(full_name="María López")
    payment = PaymentFactory(user=buyer, **kwargs)
    payment.checkout_session = CheckoutSessionFactory(site=payment.site, customer_name="María López")
    return payment


def bodies(log: EmailLog) -> tuple[str, str]:
    message = email_render(log)
    return message.body, message.alternatives[0][0]


@pytest.mark.parametrize(("method", "last4", "words"), [
    ("card", "4242", "Card ending 4242"),
    ("card", "", "Card"),
    ("bank_transfer_receiver", "", "Bank transfer"),
])
def test_the_receipt_words_how_it_was_paid_and_the_sites_own_hosting_price(method, last4, words):
    payment = paid(payment_method=method, card_last4=last4)
    site = payment.site
    site.monthly_amount = Decimal("120.00")
    log = emails.receipt_email_queue(site=site, session=payment.checkout_session, payment=payment, user=payment.user)
    text, html = bodies(log)
    assert f"Paid with:   {words}\n" in text and f">{words}</td>" in html
    assert f"Item:        Website: {site.business_name} (yours to keep)" in text
    assert "activate hosting ($120/month)" in text and "activate hosting ($120/month)" in html
    assert "Card ending" not in str(log.context) and "Next step" not in str(log.context)


def test_a_receipt_with_no_payment_method_has_no_paid_with_line():
    payment = paid(payment_method="", card_last4="")
    log = emails.receipt_email_queue(site=payment.site, session=payment.checkout_session, payment=payment, user=payment.user)
    text, html = bodies(log)
    assert "Paid with" not in text and "Paid with" not in html


def test_a_receipt_queued_before_the_wording_moved_renders_as_it_did():
    log = EmailLog.objects.create(
        kind=EmailLog.Kind.RECEIPT, to_email="maria@example.com", subject="Your receipt: Casa — $495",
        context={
            "customer_name": "María", "site_name": "Casa", "amount": "$495", "paid_on": "November 20, 2026",
            "payment_reference": "pa_old", "site_url": "https://x/sites/casa/", "portal_url": "https://x/portal/",
            "item": "Website: Casa (yours to keep)", "payment_method": "Card ending 1111",
            "next_step": "Next step: activate hosting ($95/month) from your dashboard to put your site live.",
        },
    )
    text, html = bodies(log)
    assert "Paid with:   Card ending 1111" in text and ">Card ending 1111</td>" in html
    assert "Next step: activate hosting ($95/month)" in text


@pytest.mark.parametrize(("kind", "item"), [(Payment.Kind.PURCHASE, "Website: {}"), (Payment.Kind.SUBSCRIPTION, "Hosting for {}")])
def test_the_refund_email_names_what_was_refunded(kind, item):
    payment = paid(kind=kind, refunded_at=timezone.now())
    refund = Refund.objects.create(recurrente_refund_id="re_words", payment=payment, source=Refund.Source.STAFF_REQUEST)
    log = emails.refund_email_queue(payment=payment, refund=refund, to_email="maria@example.com", amount="$495")
    text, _html = bodies(log)
    assert f"Item:             {item.format(payment.site.business_name)}\n" in text


def test_the_welcome_email_names_the_sites_own_hosting_price():
    from customers import emails as customer_emails

    buyer = CustomerFactory(full_name="María López")
    log = customer_emails.welcome_email_queue(
        user=buyer, site_name="Casa", site_url="https://x/sites/casa/", hosting_price="$120",
    )
    text, html = bodies(log)
    assert "Activate hosting ($120/month)" in text and "Activate hosting ($120/month)" in html
    # A row queued before the price was passed says the standard price, as it always did.
    log.context.pop("hosting_price")
    text, _html = bodies(log)
    assert "Activate hosting ($95/month)" in text
