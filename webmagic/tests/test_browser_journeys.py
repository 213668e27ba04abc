"""Customer journeys in a real browser (Debian's Chromium, phone-sized), against a live server.

Celery runs eagerly in the server's threads; the sandbox's webhook deliveries are held back and
sent by the test over real HTTP when it chooses, so the success page can be seen waiting."""

import re
from decimal import Decimal

import pytest
from django.core import mail

from sites.models import Site

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "maria.lopez@example.com"
PASSWORD = "a-long and memorable passphrase 42"


def link_in(message, pattern):
    return re.search(pattern, message.body).group(0)


def claim_and_pay(page, live_server, screenshot, name_prefix):
    page.goto(f"{live_server.url}/sites/la-plumbing-pros/")
    screenshot(page, f"{name_prefix}-1-preview")
    page.get_by_role("link", name=re.compile("Claim this site")).click()
    page.fill("#id_full_name", "María López")
    page.fill("#id_email", EMAIL)
    screenshot(page, f"{name_prefix}-2-purchase-form")
    page.get_by_role("button", name=re.compile("Continue to secure payment")).click()
    page.wait_for_url(re.compile(r"/sandbox/recurrente/checkout/"))
    assert page.get_by_text("$495").first.is_visible()
    screenshot(page, f"{name_prefix}-3-sandbox-checkout")


def test_new_customer_buys_sets_a_password_activates_hosting_and_goes_live(phone, live_server, site, held_deliveries, screenshot):
    page = phone
    claim_and_pay(page, live_server, screenshot, "journey")
    page.get_by_role("button", name="Pay $495").click()

    # The success page waits for the webhook, without redirecting anywhere.
    page.wait_for_url(re.compile(r"/checkout/success/\?session="))
    success_url = page.url
    assert page.get_by_text("Confirming your payment").is_visible()
    screenshot(page, "journey-4-success-confirming")
    assert held_deliveries() == [200, 200]  # legacy + unified events, signed, over HTTP
    page.get_by_text("LA Plumbing Pros is yours!").wait_for()
    assert page.url == success_url
    screenshot(page, "journey-5-success-confirmed")

    site.refresh_from_db()
    assert site.status == Site.Status.OWNED and site.owner.email == EMAIL
    [welcome] = [m for m in mail.outbox if m.to == [EMAIL] and "password" in m.body.lower() and "set-password" in m.body]
    page.goto(link_in(welcome, r"https?://\S+/portal/set-password/\S+/"))
    page.fill("#id_new_password1", PASSWORD)
    page.fill("#id_new_password2", PASSWORD)
    screenshot(page, "journey-6-set-password")
    page.get_by_role("button", name=re.compile("Save password")).click()
    page.wait_for_url(re.compile(r"/portal/"))
    assert page.get_by_text("LA Plumbing Pros").first.is_visible()
    screenshot(page, "journey-7-portal")

    # Activate hosting: a second, recurring checkout; the site goes live when Recurrente confirms.
    page.get_by_role("button", name=re.compile("Activate hosting")).first.click()
    page.wait_for_url(re.compile(r"/sandbox/recurrente/checkout/"))
    assert page.get_by_text("$95").first.is_visible()
    screenshot(page, "journey-8-hosting-checkout")
    page.get_by_role("button", name="Pay $95").click()
    page.wait_for_url(re.compile(r"/portal/sites/la-plumbing-pros/\?subscription=started"))
    screenshot(page, "journey-9-hosting-confirming")
    assert held_deliveries() == [200, 200]  # subscription.create + its first payment
    site.refresh_from_db()
    assert site.status == Site.Status.ACTIVE
    page.goto(f"{live_server.url}/sites/la-plumbing-pros/")
    assert page.get_by_text("Claim this site").count() == 0
    frame = page.frame_locator("iframe.site-frame")
    frame.get_by_text("LA Plumbing Pros").first.wait_for()
    screenshot(page, "journey-10-live-site")
    assert not [e for e in page.console_errors if "Content Security Policy" in e]


def test_abandoned_checkout_gets_one_reminder_whose_link_opens_a_discounted_checkout(
    phone, live_server, site, held_deliveries, screenshot
):
    from datetime import timedelta

    from django.utils import timezone

    from checkout.models import CheckoutSession
    from checkout.services.recovery import abandoned_carts_check

    page = phone
    claim_and_pay(page, live_server, screenshot, "recovery")  # …and walk away without paying
    session = CheckoutSession.objects.get()
    # Twenty minutes later the beat task runs (time moved, not waited).
    abandoned_carts_check(now=timezone.now() + timedelta(minutes=20))
    abandoned_carts_check(now=timezone.now() + timedelta(minutes=25))
    reminders = [m for m in mail.outbox if m.to == [EMAIL] and "SAVE10-" in m.body]
    assert len(reminders) == 1
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.ABANDONED and session.recovery_code in reminders[0].body

    page.goto(link_in(reminders[0], r"https?://\S+/checkout/recover/\S+/"))
    page.wait_for_url(re.compile(r"/sandbox/recurrente/checkout/"))
    assert page.get_by_text("$445.50").first.is_visible()
    screenshot(page, "recovery-4-discounted-checkout")
    page.get_by_role("button", name="Pay $445.50").click()
    page.wait_for_url(re.compile(r"/checkout/success/\?session="))
    assert held_deliveries() == [200, 200]
    page.get_by_text("LA Plumbing Pros is yours!").wait_for()
    screenshot(page, "recovery-5-paid")
    recovered = CheckoutSession.objects.get(recovered_from=session)
    assert recovered.status == CheckoutSession.Status.COMPLETED and recovered.amount == Decimal("445.50")


def test_with_sandbox_webhooks_off_purchase_and_hosting_complete_by_reconciliation(
    phone, live_server, site, settings, screenshot
):
    """Recurrente on test keys may send no webhook at all: the success page and the hosting return
    ask Recurrente (here the sandbox) themselves, and both purchases complete."""
    from webhooks.models import WebhookEvent

    settings.SITE_URL = live_server.url
    settings.RECURRENTE_SANDBOX = True
    settings.SANDBOX_WEBHOOKS = False
    page = phone
    claim_and_pay(page, live_server, screenshot, "no-webhooks")
    assert page.get_by_text("Webhooks are off").is_visible()
    page.get_by_role("button", name="Pay $495").click()
    page.wait_for_url(re.compile(r"/checkout/success/\?session="))
    page.get_by_text("LA Plumbing Pros is yours!").wait_for()
    screenshot(page, "no-webhooks-4-success-confirmed")
    site.refresh_from_db()
    assert site.status == Site.Status.OWNED and WebhookEvent.objects.count() == 0

    [welcome] = [m for m in mail.outbox if m.to == [EMAIL] and "set-password" in m.body]
    page.goto(link_in(welcome, r"https?://\S+/portal/set-password/\S+/"))
    page.fill("#id_new_password1", PASSWORD)
    page.fill("#id_new_password2", PASSWORD)
    page.get_by_role("button", name=re.compile("Save password")).click()
    page.wait_for_url(re.compile(r"/portal/"))
    page.get_by_role("button", name=re.compile("Activate hosting")).first.click()
    page.wait_for_url(re.compile(r"/sandbox/recurrente/checkout/"))
    page.get_by_role("button", name="Pay $95").click()
    page.wait_for_url(re.compile(r"/portal/sites/la-plumbing-pros/\?subscription=started"))
    page.get_by_text("Your site is live").first.wait_for()
    screenshot(page, "no-webhooks-5-hosting-live")
    site.refresh_from_db()
    assert site.status == Site.Status.ACTIVE and WebhookEvent.objects.count() == 0
