"""A second buyer on a site that sells while they are on the payment page, in a real browser at
desktop and phone sizes, against a live server and the built-in sandbox of Recurrente.

Their checkout is closed by the sale, yet they pay: the success page first says the site was just
sold and that nothing more is needed, then (once the payment is recorded) that the full refund was
started. The refund is requested from the sandbox, the buyer is emailed, staff are alerted."""

import re

import pytest
from django.core import mail

from checkout import sandbox
from checkout.models import CheckoutSession, Payment, Refund, SandboxCheckout
from checkout.services.purchase import RequestContext, purchase_start
from sites.models import Site

from .conftest import watched_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIRST = "maria.lopez@example.com"
SECOND = "ana.late@example.com"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=sorted(VIEWPORTS))
def browser_page(request, chromium):
    mobile = request.param == "phone"
    context = chromium.new_context(viewport=VIEWPORTS[request.param], is_mobile=mobile, has_touch=mobile)
    page = watched_page(context)
    page.viewport_name = request.param
    yield page
    context.close()


def test_a_buyer_paying_for_a_site_that_just_sold_is_told_and_refunded(browser_page, live_server, site, held_deliveries, screenshot):
    page, name = browser_page, f"site-sold-{browser_page.viewport_name}"
    page.goto(f"{live_server.url}/sites/la-plumbing-pros/")
    page.get_by_role("link", name=re.compile("Claim this site")).first.click()
    page.fill("#id_full_name", "Ana Late")
    page.fill("#id_email", SECOND)
    page.get_by_role("button", name=re.compile("Continue to secure payment")).click()
    page.wait_for_url(re.compile(r"/sandbox/recurrente/checkout/"))

    # Meanwhile another buyer completes their purchase: the site is sold, the open checkout closed.
    first = purchase_start(site_id=site.pk, full_name="María López", email=FIRST,
                           request_context=RequestContext(ip_address=None, user_agent="", referrer=""))
    sandbox.sandbox_checkout_pay(checkout_id=first.recurrente_checkout_id)
    assert held_deliveries() == [200, 200]
    site.refresh_from_db()
    assert site.status == Site.Status.OWNED and site.owner.email == FIRST
    second = CheckoutSession.objects.get(customer_email=SECOND)
    assert second.closed_reason == CheckoutSession.ClosedReason.SITE_SOLD

    # Recurrente cannot be told to expire a checkout: the buyer can still pay on its page.
    page.get_by_role("button", name="Pay $495").click()
    page.wait_for_url(re.compile(r"/checkout/success/\?session="))
    page.get_by_role("heading", name="Sorry — LA Plumbing Pros was just sold to someone else").wait_for()
    # The page learns of the payment by itself (the sandbox is asked, as on test keys) and says the refund started.
    page.get_by_text("We have started a full refund").wait_for()
    assert page.get_by_text("$495").first.is_visible()
    assert page.get_by_role("link", name="Go to your dashboard").count() == 0
    screenshot(page, f"{name}-success-refund")

    payment = Payment.objects.get(checkout_session=second)
    assert payment.flag == Payment.Flag.NEEDS_REFUND and payment.status == Payment.Status.REFUNDED
    refund = Refund.objects.get(payment=payment)
    assert refund.source == Refund.Source.SITE_SOLD
    assert SandboxCheckout.objects.get(pk=second.recurrente_checkout_id).refund_id == refund.recurrente_refund_id
    told = [m for m in mail.outbox if m.to == [SECOND] and "sold just before your payment" in m.subject]
    assert len(told) == 1 and "$495" in told[0].body
    assert [m for m in mail.outbox if "Refund started automatically" in m.subject]

    # The held webhooks for that payment arrive late: nothing more happens.
    assert held_deliveries() == [200, 200]
    assert Refund.objects.count() == 1
    assert len([m for m in mail.outbox if m.to == [SECOND] and "sold just before your payment" in m.subject]) == 1
    assert not [e for e in page.console_errors if "Content Security Policy" in e]


def test_a_closed_checkouts_success_page_before_any_payment(browser_page, live_server, site, held_deliveries, screenshot):
    """What the second buyer sees if they come back to their checkout's page without paying."""
    second = purchase_start(site_id=site.pk, full_name="Ana Late", email=SECOND,
                            request_context=RequestContext(ip_address=None, user_agent="", referrer=""))
    first = purchase_start(site_id=site.pk, full_name="María López", email=FIRST,
                           request_context=RequestContext(ip_address=None, user_agent="", referrer=""))
    sandbox.sandbox_checkout_pay(checkout_id=first.recurrente_checkout_id)
    assert held_deliveries() == [200, 200]

    page = browser_page
    page.goto(f"{live_server.url}/checkout/success/?session={second.pk}")
    page.get_by_role("heading", name="Sorry — LA Plumbing Pros was just sold to someone else").wait_for()
    assert page.get_by_text("You have not been charged.").is_visible()
    screenshot(page, f"site-sold-{page.viewport_name}-success-not-charged")
    assert not Payment.objects.filter(checkout_session=second).exists()
