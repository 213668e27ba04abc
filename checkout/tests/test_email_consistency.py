"""One voice in every customer email: one greeting rule, one money format, a copy-the-link
fallback under every button, brand-coloured links; and a receipt that shows the discount a
recovery checkout carried. Rows queued before these rules render by them too (they are applied
when an email is rendered, from the context stored on the row)."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.template import Context, Template
from django.template.loader import render_to_string

from checkout import emails
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory
from customers.tests.factories import CustomerFactory
from webmagic.emails import customer_greeting, email_render
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db

EMAIL_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "emails"
K = EmailLog.Kind


def bodies(log: EmailLog) -> tuple[str, str]:
    message = email_render(log)
    return message.body, message.alternatives[0][0]


@pytest.mark.parametrize(("name", "greeting"), [
    ("María José Pérez", "Hi María,"), ("  María  ", "Hi María,"), ("Bob", "Hi Bob,"), ("", "Hi,"), (None, "Hi,"),
])
def test_one_greeting_rule_the_first_word_of_the_name(name, greeting):
    assert customer_greeting(name or "") == greeting


# Kinds with no token links render from their stored context alone.
PLAIN_KINDS = [K.RECEIPT, K.REFUND, K.HOSTING_ACTIVATED, K.HOSTING_SUSPENDED, K.PAYMENT_PROBLEM, K.HOSTING_NUDGE, K.EDIT_REQUEST]


@pytest.mark.parametrize("kind", PLAIN_KINDS)
def test_every_customer_email_greets_by_first_name_even_on_rows_queued_before_the_rule(kind):
    # A row written before the rule: its context has the full name, and no greeting.
    log = EmailLog.objects.create(kind=kind, to_email="m@example.com", subject="s", context={
        "customer_name": "María José Pérez", "site_name": "Casa", "amount": "$495", "portal_url": "https://x/portal/",
        "site_url": "https://x/sites/casa/", "reason": "paused", "activate_url": "https://x/a/", "edits_url": "https://x/e/",
    })
    text, html = bodies(log)
    assert text.startswith("Hi María,\n") and "<p>Hi María,</p>" in html
    assert "José Pérez" not in text and "José Pérez" not in html


def test_an_email_without_a_name_says_hi_and_nothing_else():
    log = EmailLog.objects.create(kind=K.RECEIPT, to_email="m@example.com", subject="s", context={"amount": "$495"})
    text, html = bodies(log)
    assert text.startswith("Hi,\n") and "<p>Hi,</p>" in html


def test_no_email_template_greets_on_its_own():
    for path in EMAIL_TEMPLATES.glob("*.*"):
        assert "Hi {{" not in path.read_text() and "Hi{%" not in path.read_text(), path.name


def test_every_button_has_its_link_written_out_under_it():
    html = render_to_string("emails/_button.html", {"url": "https://x/set/abc/", "label": "Set your password"})
    assert html.count('href="https://x/set/abc/"') == 2
    assert "Copy this link into your browser" in html and ">https://x/set/abc/</a>" in html


def test_every_email_button_is_the_one_include_so_none_lacks_the_fallback():
    for path in EMAIL_TEMPLATES.glob("*.html"):
        if path.name == "_button.html":
            continue
        # Our button style lives only in _button.html; a template drawing its own would have no fallback.
        assert "display:inline-block" not in path.read_text(), path.name


def test_the_receipt_button_has_its_fallback_link():
    log = EmailLog.objects.create(kind=K.RECEIPT, to_email="m@example.com", subject="s",
                                  context={"customer_name": "Ana", "amount": "$495", "portal_url": "https://x/portal/"})
    _text, html = bodies(log)
    assert html.count('href="https://x/portal/"') == 2 and "Copy this link" in html


def test_links_in_emails_are_in_the_brand_colour():
    log = EmailLog.objects.create(kind=K.RECEIPT, to_email="m@example.com", subject="s", context={"amount": "$495"})
    _text, html = bodies(log)
    assert "<style>a { color: #4f46e5; }" in html and '<body link="#4f46e5"' in html


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    ("495.00", "USD", "$495"), ("445.50", "USD", "$445.50"), ("1495.00", "usd", "$1,495"), ("1250.00", "GTQ", "1,250.00 GTQ"),
])
def test_one_money_format_on_pages_as_in_emails(amount, currency, shown):
    rendered = Template("{% load money %}{{ amount|money:currency }}").render(Context({"amount": Decimal(amount), "currency": currency}))
    assert rendered == shown


def test_the_money_filter_defaults_to_dollars_and_leaves_nothing_empty():
    template = Template("{% load money %}[{{ amount|money }}]")
    assert template.render(Context({"amount": Decimal("95")})) == "[$95]"
    assert template.render(Context({"amount": None})) == "[]"


def test_no_customer_page_writes_money_by_hand():
    templates = Path(__file__).resolve().parents[2] / "templates"
    for folder in ("checkout", "sites", "portal", "customers", "legal"):
        for path in (templates / folder).glob("*.html"):
            if path.name == "sandbox_checkout.html":  # imitates Recurrente's own page
                continue
            text = path.read_text()
            assert '${{' not in text and "floatformat" not in text, path.name


# --- The receipt shows the discount ---------------------------------------------------------------

def recovered_payment():
    buyer = CustomerFactory(full_name="María López")
    original = CheckoutSessionFactory(customer_name="María López", amount=Decimal("495.00"))
    session = CheckoutSessionFactory(site=original.site, customer_name="María López", amount=Decimal("445.50"),
                                     discount_percent=10, recovered_from=original)
    payment = PaymentFactory(user=buyer, site=session.site, amount=Decimal("445.50"), checkout_session=session)
    return session, payment


def test_a_receipt_for_a_discounted_checkout_shows_price_discount_and_amount_paid():
    session, payment = recovered_payment()
    log = emails.receipt_email_queue(site=session.site, session=session, payment=payment, user=payment.user)
    text, html = bodies(log)
    assert "Price:       $495\nDiscount:    −$49.50 (10% off)\nAmount paid: $445.50\n" in text
    assert ">Discount (10% off)</td>" in html and ">−$49.50</td>" in html and ">$495</td>" in html and ">$445.50</td>" in html


def test_a_receipt_at_full_price_has_no_discount_lines():
    payment = PaymentFactory(user=CustomerFactory())
    session = CheckoutSessionFactory(site=payment.site)
    log = emails.receipt_email_queue(site=payment.site, session=session, payment=payment, user=payment.user)
    text, html = bodies(log)
    assert "Discount" not in text and "Discount" not in html and "Amount paid: $495\n" in text
    assert "discount" not in log.context


def test_a_discounted_checkout_without_its_original_row_takes_the_sites_price():
    session, payment = recovered_payment()
    session.recovered_from = None
    log = emails.receipt_email_queue(site=session.site, session=session, payment=payment, user=payment.user)
    assert log.context["original_price"] == "$495" and log.context["discount"] == "$49.50"


# --- Local time ------------------------------------------------------------------------------------

def test_customers_read_dates_in_their_local_zone_not_utc():
    from datetime import UTC, datetime

    # 03:00 UTC on the 21st is still the evening of the 20th in Guatemala.
    payment = PaymentFactory(user=CustomerFactory(), paid_at=datetime(2026, 11, 21, 3, 0, tzinfo=UTC))
    session = CheckoutSessionFactory(site=payment.site)
    log = emails.receipt_email_queue(site=payment.site, session=session, payment=payment, user=payment.user)
    assert log.context["paid_on"] == "November 20, 2026"
