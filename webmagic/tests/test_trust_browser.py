"""Trust where the decision is made, in a real browser at desktop and phone sizes: the preview
bar's "What's included" panel, the purchase page with its thumbnail and contacts, a legal page.
Screenshots land in test-artifacts/screenshots/trust-*.png."""

import re

import pytest

from webmagic.tests.test_accessibility_browser import AXE_RUN, FAILING_IMPACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def axe_serious(page) -> list:
    """axe-core's serious or critical violations on the page as it is now (the open panel included)."""
    return [v for v in page.evaluate(AXE_RUN) if v["impact"] in FAILING_IMPACTS]


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def within_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= size["width"] + 1 \
        and box["y"] + box["height"] <= size["height"] + 1


def test_the_preview_bar_opens_what_is_included_who_we_are_and_a_person_to_reach(sized_page, live_server, site, screenshot, settings):
    page = sized_page
    page.goto(f"{live_server.url}/sites/la-plumbing-pros/")
    claim = page.get_by_role("link", name=re.compile("Claim this site — \\$495"))
    assert claim.is_visible() and within_viewport(page, claim) and fits_the_width(page)
    screenshot(page, f"trust-preview-{page.size_name}")

    page.get_by_text("What's included").click()
    panel = page.locator(".claim-info-panel")
    panel.wait_for()
    assert panel.get_by_text("Optional hosting to put it live: $95/month").is_visible()
    assert panel.get_by_text("within 14 days").is_visible()
    email = panel.get_by_role("link", name=settings.SUPPORT_EMAIL)
    email.scroll_into_view_if_needed()
    assert email.is_visible() and within_viewport(page, email)
    assert panel.get_by_role("link", name="Refund policy").count() == 1
    assert fits_the_width(page)
    panel.evaluate("el => el.scrollTop = 0")
    assert axe_serious(page) == []
    screenshot(page, f"trust-preview-details-{page.size_name}")
    # The panel is a native disclosure: a second tap closes it, and the site is still there.
    page.get_by_text("What's included").click()
    assert not panel.is_visible() and page.locator("iframe.site-frame").is_visible()
    assert page.console_errors == []


def test_the_purchase_page_shows_the_site_the_offer_and_a_person_to_reach(sized_page, live_server, site, screenshot, settings):
    page = sized_page
    page.goto(f"{live_server.url}/sites/la-plumbing-pros/purchase/")
    thumb = page.locator(".site-thumb iframe")
    assert thumb.is_visible() and fits_the_width(page)
    page.frame_locator(".site-thumb iframe").get_by_text("LA Plumbing Pros").first.wait_for()  # the site, rendered
    assert page.get_by_text("Hosting is optional: put it online for $95/month").is_visible()
    screenshot(page, f"trust-purchase-{page.size_name}")
    assert axe_serious(page) == []

    contact = page.get_by_role("link", name=settings.SUPPORT_EMAIL).first
    contact.scroll_into_view_if_needed()
    assert contact.is_visible()
    screenshot(page, f"trust-purchase-contact-{page.size_name}")
    page.get_by_role("link", name="refund policy", exact=True).click()
    page.wait_for_url(re.compile(r"/refunds/$"))
    assert page.get_by_role("heading", level=1, name="Refund policy").is_visible() and fits_the_width(page)
    screenshot(page, f"trust-refunds-{page.size_name}")
    assert axe_serious(page) == []
    assert page.console_errors == []
