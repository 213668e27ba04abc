import pytest
from django.test import override_settings

from sites.tests.factories import SiteFactory, SiteVersionFactory
from webmagic.middleware import content_security_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    site = SiteFactory(slug="joes")
    SiteVersionFactory(site=site)
    return site


@pytest.mark.parametrize("url", ["/", "/sites/joes/", "/sites/joes/purchase/", "/admin/login/", "/healthz/"])
def test_our_pages_carry_a_strict_csp_and_the_usual_headers(client, site, url):
    response = client.get(url)
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "camera=()" in response["Permissions-Policy"]


def test_site_documents_keep_their_own_sandbox_csp(client, site):
    csp = client.get("/sites/joes/raw/")["Content-Security-Policy"]
    assert csp.startswith("sandbox ") and "frame-ancestors 'self'" in csp


def test_form_action_allows_the_redirect_to_recurrentes_checkout(settings):
    settings.RECURRENTE_CHECKOUT_ORIGIN = "https://app.recurrente.com"
    settings.SITE_URL = "https://webmagic.example"
    form_action = next(d for d in content_security_policy().split("; ") if d.startswith("form-action"))
    assert form_action == "form-action 'self' https://app.recurrente.com https://webmagic.example"


def test_our_templates_have_no_inline_script_or_style(client, site):
    for url in ["/", "/sites/joes/", "/sites/joes/purchase/"]:
        body = client.get(url).content.decode()
        assert "<script>" not in body and " style=" not in body and "<style" not in body


@override_settings(SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True, SECURE_HSTS_PRELOAD=True)
def test_hsts_on_https(client, site):
    response = client.get("/sites/joes/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
