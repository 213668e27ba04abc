"""The purchase page is where the decision is made: it shows the site itself (as a picture of the
untrusted document, sandboxed), what is included, the optional hosting and its price, who we are,
a person to reach, the refund promise and links to the terms, privacy and refund policies."""

from decimal import Decimal

import pytest

pytestmark = pytest.mark.django_db


def page(client, site) -> str:
    response = client.get(f"/sites/{site.slug}/purchase/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_shows_a_thumbnail_of_the_site_sandboxed_with_no_permissions(client, preview_site):
    body = page(client, preview_site)
    thumb = body[body.index('<div class="site-thumb">'):]
    thumb = thumb[:thumb.index("</div>")]
    assert 'src="/sites/la-plumbing-pros/raw/"' in thumb
    # Scripts only, in an opaque origin: no forms, popups, top navigation or same origin.
    assert 'sandbox="allow-scripts"' in thumb and thumb.count("allow-") == 1
    assert 'tabindex="-1"' in thumb and 'title="Preview of the LA Plumbing Pros website"' in thumb
    assert "Hello from the site" not in body  # the untrusted markup is never inlined into our page
    assert "{#" not in body and "{%" not in body  # template comments stay comments


def test_the_thumbnail_document_may_be_framed_by_our_own_pages_only(client, preview_site):
    response = client.get("/sites/la-plumbing-pros/raw/")
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Content-Security-Policy"].startswith("sandbox ") and "frame-ancestors 'self'" in response["Content-Security-Policy"]


def test_the_page_says_what_is_included_and_that_hosting_is_optional_at_the_sites_price(client, preview_site):
    preview_site.monthly_amount = Decimal("120.00")
    preview_site.save()
    body = page(client, preview_site)
    assert "$495 <small>one time</small>" in body
    assert "Hosting is optional: put it online for $120/month, cancel any time" in body
    assert "Continue to secure payment — $495" in body


def test_the_page_says_who_we_are_how_to_reach_a_person_and_the_refund_promise(client, preview_site, settings):
    settings.SUPPORT_EMAIL, settings.SUPPORT_PHONE, settings.SUPPORT_WHATSAPP = "ayuda@x.example", "+502 1111 2222", "50211112222"
    body = page(client, preview_site)
    assert "<h2>Who we are</h2>" in body and "WebMagic is a small team" in body
    assert 'href="mailto:ayuda@x.example"' in body and ">+502 1111 2222</a>" in body and 'href="https://wa.me/50211112222"' in body
    assert "Ask within 14 days of paying and we refund the full price" in body


def test_the_page_links_the_terms_privacy_and_refund_policy(client, preview_site):
    body = page(client, preview_site)
    assert 'agree to our <a href="/terms/">terms of sale</a>' in body
    assert '<a href="/privacy/">privacy policy</a>' in body and '<a href="/refunds/">refund policy</a>' in body


def test_a_price_with_cents_is_shown_with_its_cents(client, preview_site):
    preview_site.purchase_amount = Decimal("1495.50")
    preview_site.save()
    assert "$1,495.50 <small>one time</small>" in page(client, preview_site)
