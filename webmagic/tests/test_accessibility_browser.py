"""Every customer page through axe-core in a real browser, at 1280×800 and 390×844 (WCAG 2.2 AA).

A buyer's whole path is walked (preview, purchase with a mistake, the sandbox checkout, the success
page, choosing a password, every portal page, signing out and back in, the reset and link-error
pages, a 404), axe-core runs on each page as the buyer sees it, and any serious or critical
violation fails the test, listed page by page. A screenshot of each page is saved under
test-artifacts/screenshots/ (a11y-<width>-<nn>-<page>.png).

axe-core is vendored (webmagic/tests/axe/, MPL-2.0) so the test needs no network. It is added to
every page as an init script, which the page's Content-Security-Policy does not apply to, so the
pages are tested with their real CSP on. The site inside the preview's sandboxed iframe is the
customer's generated page, not ours: axe does not descend into frames."""

import re

import pytest
from django.core import mail

from customers.emails import password_reset_path, set_password_path
from customers.models import CustomerUser
from sites import services as site_services
from sites.models import Site

from .conftest import AXE, watched_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "maria.lopez@example.com"
PASSWORD = "a-long and memorable passphrase 42"
FAILING_IMPACTS = {"serious", "critical"}
VIEWPORTS = {
    "1280": {"viewport": {"width": 1280, "height": 800}},
    "390": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
# The whole rule set (WCAG 2.0–2.2 A/AA and axe's best practices), without descending into frames.
AXE_RUN = """() => axe.run(document, {iframes: false, resultTypes: ["violations"]}).then(r => r.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
})))"""


class Audit:
    """Runs axe on the page as it is now, keeps what fails, and saves a screenshot of it."""

    def __init__(self, page, width, screenshot, first_number=1):
        self.page, self.width, self.screenshot = page, width, screenshot
        self.first_number = first_number
        self.failures: list[str] = []
        self.seen: list[str] = []

    def check(self, name: str):
        self.page.wait_for_load_state("load")
        self.seen.append(name)
        self.screenshot(self.page, f"a11y-{self.width}-{self.first_number + len(self.seen) - 1:02d}-{name}")
        for violation in self.page.evaluate(AXE_RUN):
            line = f"{name} ({self.page.url}): {violation['impact']} {violation['id']} — {violation['help']} at {violation['targets']}"
            if violation["impact"] in FAILING_IMPACTS:
                self.failures.append(line)
            else:
                print("axe (not failing):", line)

    def focused_id(self) -> str:
        return self.page.evaluate("() => document.activeElement && document.activeElement.id")


def test_the_axe_harness_reports_a_real_violation(chromium, live_server):
    """Guards the test above: an image without alt text on one of our pages must be reported."""
    context = chromium.new_context(**VIEWPORTS["390"])
    context.add_init_script(path=str(AXE))
    page = watched_page(context)
    try:
        page.goto(f"{live_server.url}/portal/login/")
        page.evaluate("() => document.querySelector('main').append(document.createElement('img'))")
        ids = {violation["id"]: violation["impact"] for violation in page.evaluate(AXE_RUN)}
    finally:
        context.close()
    assert ids.get("image-alt") == "critical"


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_every_customer_page_passes_axe_at_both_widths(chromium, live_server, site, held_deliveries, screenshot, width):
    context = chromium.new_context(**VIEWPORTS[width])
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.add_init_script(path=str(AXE))
    page = watched_page(context)
    audit = Audit(page, width, screenshot)
    url = live_server.url
    try:
        walk_the_buyers_pages(page, audit, url, site, held_deliveries)
    finally:
        context.close()
    assert len(audit.seen) >= 20
    assert not audit.failures, "axe found serious or critical violations:\n" + "\n".join(audit.failures)
    assert not [e for e in page.console_errors if "Content Security Policy" in e]


def walk_the_buyers_pages(page, audit, url, site, held_deliveries):
    page.goto(f"{url}/sites/la-plumbing-pros/")
    page.frame_locator("iframe.site-frame").get_by_text("LA Plumbing Pros").first.wait_for()
    audit.check("preview")

    page.goto(f"{url}/sites/la-plumbing-pros/purchase/")
    audit.check("purchase")
    # A mistake in the second field: after the submit the cursor is there, not in the first.
    page.fill("#id_full_name", "María López")
    page.fill("#id_email", "maria.lopez@")
    page.get_by_role("button", name=re.compile("Continue to secure payment")).click()
    page.locator("#id_email_error").wait_for()
    assert audit.focused_id() == "id_email"
    assert page.get_attribute("#id_email", "aria-describedby") == "id_email_error"
    audit.check("purchase-error")
    page.fill("#id_email", EMAIL)
    page.get_by_role("button", name=re.compile("Continue to secure payment")).click()
    page.wait_for_url(re.compile(r"/sandbox/recurrente/checkout/"))
    audit.check("sandbox-checkout")

    page.get_by_role("button", name="Pay $495").click()
    page.wait_for_url(re.compile(r"/checkout/success/\?session="))
    audit.check("success-confirming")
    held_deliveries()
    page.get_by_text("LA Plumbing Pros is yours!").wait_for()
    audit.check("success-confirmed")

    site.refresh_from_db()
    owner = site.owner
    page.goto(url + set_password_path(user=owner))
    page.wait_for_url(re.compile(r"/choose/"))
    audit.check("set-password")
    page.fill("#id_new_password1", PASSWORD)
    page.fill("#id_new_password2", PASSWORD + " typo")
    page.get_by_role("button", name=re.compile("Save password")).click()
    page.locator("#id_new_password2_error").wait_for()
    assert audit.focused_id() == "id_new_password2"
    audit.check("set-password-error")
    page.fill("#id_new_password1", PASSWORD)
    page.fill("#id_new_password2", PASSWORD)
    page.get_by_role("button", name=re.compile("Save password")).click()
    page.wait_for_url(re.compile(r"/portal/"))
    page.goto(f"{url}/portal/")
    audit.check("portal-dashboard")

    page.goto(f"{url}/portal/sites/la-plumbing-pros/")
    audit.check("portal-site")
    page.get_by_role("link", name="Receipt").first.click()
    page.wait_for_url(re.compile(r"/portal/payments/.+/receipt/"))
    audit.check("portal-receipt")
    page.goto(f"{url}/portal/account/")
    audit.check("portal-account")
    page.goto(f"{url}/portal/sites/la-plumbing-pros/edits/")
    audit.check("portal-edits-before-hosting")
    page.goto(f"{url}/portal/sites/la-plumbing-pros/domains/")
    audit.check("portal-domains-before-hosting")

    # Once the site is live: the forms themselves, and a domain waiting for its TXT record.
    Site.objects.filter(pk=site.pk).update(status=Site.Status.ACTIVE)
    site_services.domain_claim(site_id=site.pk, user=owner, domain="www.laplumbingpros.com")
    page.goto(f"{url}/portal/sites/la-plumbing-pros/domains/")
    copy = page.locator("button[data-copy^=txt-value-]")
    copy.wait_for()
    audit.check("portal-domains")
    value = page.locator("code[id^=txt-value-]")
    assert value.evaluate("el => el.getClientRects().length") == 1  # one line box: never broken mid-token
    # …and it scrolls inside its own box: the page itself never gets wider than the phone.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    copy.scroll_into_view_if_needed()
    copy.click()
    page.get_by_text("Copied to the clipboard.").wait_for(state="attached")
    assert page.evaluate("() => navigator.clipboard.readText()") == value.inner_text().strip()
    audit.screenshot(page, f"a11y-{audit.width}-15-portal-domains-txt-record")
    page.fill("#id_domain", "https://www.example.com/")
    page.get_by_role("button", name="Add domain").click()
    page.get_by_text("www.example.com is added").wait_for()
    page.goto(f"{url}/portal/sites/la-plumbing-pros/edits/")
    page.get_by_role("button", name="Send request").click()
    page.locator("#id_description_error").wait_for()
    assert audit.focused_id() == "id_description"
    audit.check("portal-edits-error")

    CustomerUser.objects.filter(pk=owner.pk).update(email_verified=False)
    page.goto(f"{url}/portal/")
    page.get_by_text(owner.email).first.wait_for()
    audit.check("verify-required")
    CustomerUser.objects.filter(pk=owner.pk).update(email_verified=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state("load")
    page.goto(f"{url}/portal/login/")
    audit.check("login")
    page.fill("#id_username", EMAIL)
    page.fill("#id_password", "not the password")
    # Tabbing onto the indigo button draws the thick ring (keyboard focus, so :focus-visible).
    page.keyboard.press("Tab")
    ring = page.evaluate("""() => { const el = document.activeElement, style = getComputedStyle(el);
        return [el.textContent.trim(), style.outlineStyle, style.outlineWidth, style.outlineColor]; }""")
    assert ring == ["Sign in", "solid", "3px", "rgb(17, 24, 39)"]
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("don't match an account").wait_for()
    audit.check("login-error")

    page.goto(f"{url}/portal/password-reset/")
    audit.check("password-reset")
    page.fill("#id_email", EMAIL)
    page.get_by_role("button").filter(has_text=re.compile("link|reset", re.I)).first.click()
    page.wait_for_load_state("load")
    audit.check("password-reset-sent")
    page.goto(url + password_reset_path(user=owner))
    page.wait_for_load_state("load")
    audit.check("password-reset-confirm")

    page.goto(f"{url}/portal/set-password/bad/link/")
    audit.check("set-password-invalid")
    page.goto(f"{url}/portal/verify-email/bad/link/")
    audit.check("verify-email-invalid")
    page.goto(f"{url}/no-such-page/")
    audit.check("not-found")
    assert mail.outbox  # the purchase and the reset sent their emails on the way


def page_from_template(page, url, path, template, status):
    """Pages the walk cannot reach on demand (429, 500, 503) rendered by Django from their real
    templates and served at a URL of the live server, so the real stylesheet and CSP apply."""
    from django.contrib.auth.models import AnonymousUser
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    request = RequestFactory().get(path)
    request.user = AnonymousUser()
    html = render_to_string(template, request=request)
    page.route(f"{url}{path}", lambda route: route.fulfill(status=status, body=html, content_type="text/html; charset=utf-8"))
    page.goto(f"{url}{path}")


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_recovery_unsubscribe_and_error_pages_pass_axe_at_both_widths(chromium, live_server, site, screenshot, width):
    from datetime import timedelta

    from django.utils import timezone

    from checkout.services.recovery import recovery_token_make, unsubscribe_token_make
    from checkout.tests.factories import CheckoutSessionFactory
    from customers.tests.factories import CustomerFactory
    from sites.tests.factories import SiteFactory, SiteVersionFactory

    url = live_server.url
    sold = SiteFactory(slug="tacos-ana", business_name="Tacos Ana", status=Site.Status.OWNED,
                       owner=CustomerFactory(email="ana@example.com"), purchased_at=timezone.now())
    someone_elses = CheckoutSessionFactory(site=sold, status="abandoned", reminder_sent_at=timezone.now())
    expired = CheckoutSessionFactory(site=site, status="abandoned", reminder_sent_at=timezone.now() - timedelta(days=30))
    SiteVersionFactory(site=sold)

    context = chromium.new_context(**VIEWPORTS[width])
    context.add_init_script(path=str(AXE))
    page = watched_page(context)
    audit = Audit(page, width, screenshot, first_number=41)  # after the buyer's walk in the folder listing
    try:
        page.goto(f"{url}/checkout/recover/{recovery_token_make(session_id=someone_elses.pk)}/")
        page.get_by_text("Tacos Ana").first.wait_for()
        audit.check("recover-site-sold")
        page.goto(f"{url}/checkout/recover/{recovery_token_make(session_id=expired.pk)}/")
        page.locator("#id_full_name").wait_for()
        audit.check("recover-offer-ended")
        page.goto(f"{url}/checkout/unsubscribe/{unsubscribe_token_make(session_id=expired.pk)}/")
        audit.check("unsubscribe")
        page.get_by_role("button").filter(has_text=re.compile("unsubscribe|stop", re.I)).first.click()
        page.get_by_text("You're unsubscribed").wait_for()
        audit.check("unsubscribe-done")
        for path, template, status in [("/__429__/", "429.html", 429), ("/__500__/", "500.html", 500),
                                       ("/__503__/", "503.html", 503)]:
            page_from_template(page, url, path, template, status)
            audit.check(f"error-{status}")
    finally:
        context.close()
    assert len(audit.seen) == 7
    assert not audit.failures, "axe found serious or critical violations:\n" + "\n".join(audit.failures)
    assert not [e for e in page.console_errors if "Content Security Policy" in e]
