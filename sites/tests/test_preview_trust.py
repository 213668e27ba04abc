"""The preview bar says, before anyone clicks "Claim", what is included, that hosting is optional
and what it costs (the site's own price), who we are, how to reach a person and the refund promise."""

from decimal import Decimal

import pytest

from sites.tests.factories import SiteFactory, SiteVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    site = SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", monthly_amount=Decimal("120.00"))
    SiteVersionFactory(site=site)
    return site


def bar_of(body: str) -> str:
    return body[body.index('<div class="claim-bar"'):body.index('<iframe class="site-frame"')]


def test_the_bar_says_what_is_included_and_that_hosting_is_optional_at_the_sites_price(client, site):
    bar = bar_of(client.get("/sites/joes-pipes/").content.decode())
    assert "<summary>What&#x27;s included</summary>" in bar or "<summary>What's included</summary>" in bar
    assert "yours to keep" in bar and "Download its files" in bar
    assert "Optional hosting to put it live: $120/month, cancel any time" in bar
    assert "Claim this site — $495" in bar


def test_the_bar_says_who_we_are_how_to_reach_a_person_and_the_refund_promise(client, site, settings):
    settings.SUPPORT_EMAIL, settings.SUPPORT_PHONE, settings.SUPPORT_WHATSAPP = "ayuda@x.example", "+502 1111 2222", "50211112222"
    bar = bar_of(client.get("/sites/joes-pipes/").content.decode())
    assert "Who we are" in bar and "WebMagic is a small team" in bar
    assert 'href="mailto:ayuda@x.example"' in bar and 'href="tel:+50211112222"' in bar and 'href="https://wa.me/50211112222"' in bar
    assert "within 14 days" in bar and "refund the full price" in bar
    for path in ("/terms/", "/privacy/", "/refunds/"):
        assert f'href="{path}"' in bar


def test_the_bar_needs_no_script_and_carries_no_inline_style(client, site):
    body = client.get("/sites/joes-pipes/").content.decode()
    assert "<details" in bar_of(body)  # a native disclosure: opens with a tap, a click or a key
    assert "style=" not in body and "<script>" not in body
