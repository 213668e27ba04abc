import pytest

from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory, SiteVersionFactory

pytestmark = pytest.mark.django_db

SITE_HTML = "<!doctype html><html><body><h1>Joe's Pipes</h1><script>document.cookie</script></body></html>"


@pytest.fixture
def site():
    site = SiteFactory(slug="joes-pipes", business_name="Joe's Pipes")
    SiteVersionFactory(site=site, html=SITE_HTML)
    return site


def sell(site, owner, status=Site.Status.OWNED):
    site.owner = owner
    site.status = status
    site.save()


def test_preview_shows_the_claim_bar_and_a_sandboxed_frame(client, site):
    response = client.get("/sites/joes-pipes/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Claim this site — $495" in body
    assert 'href="/sites/joes-pipes/purchase/"' in body
    assert 'sandbox="allow-scripts' in body
    assert "allow-same-origin" not in body
    assert SITE_HTML not in body  # the untrusted markup never runs inside our page


def test_preview_after_cancelled_checkout_shows_a_friendly_note(client, site):
    response = client.get("/sites/joes-pipes/?checkout=cancelled")
    assert "nothing was charged" in response.content.decode()
    assert "nothing was charged" not in client.get("/sites/joes-pipes/").content.decode()


def test_site_document_is_served_under_a_csp_sandbox(client, site):
    response = client.get("/sites/joes-pipes/raw/")
    assert response.status_code == 200
    assert response.content.decode() == SITE_HTML
    csp = response["Content-Security-Policy"]
    assert csp.startswith("sandbox ")
    assert "allow-same-origin" not in csp
    assert "frame-ancestors 'self'" in csp
    assert response["X-Frame-Options"] == "SAMEORIGIN"


def test_our_own_pages_cannot_be_framed(client, site):
    assert client.get("/sites/joes-pipes/")["X-Frame-Options"] == "DENY"


def test_owned_site_tells_visitors_it_was_claimed(client, site):
    sell(site, CustomerFactory())
    response = client.get("/sites/joes-pipes/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "has been claimed" in body
    assert "Claim this site" not in body
    assert "Activate hosting" not in body
    assert client.get("/sites/joes-pipes/raw/").status_code == 404


def test_owned_site_offers_its_owner_to_activate_hosting(client, site):
    owner = CustomerFactory()
    sell(site, owner)
    client.force_login(owner)
    body = client.get("/sites/joes-pipes/").content.decode()
    assert "Activate hosting — $95/month" in body
    assert client.get("/sites/joes-pipes/raw/").status_code == 200


def test_active_site_is_live_without_any_bar(client, site):
    sell(site, CustomerFactory(), Site.Status.ACTIVE)
    response = client.get("/sites/joes-pipes/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Claim this site" not in body and "claimed" not in body
    assert 'src="/sites/joes-pipes/raw/"' in body
    assert client.get("/sites/joes-pipes/raw/").status_code == 200


def test_suspended_site_is_temporarily_unavailable(client, site):
    sell(site, CustomerFactory(), Site.Status.SUSPENDED)
    response = client.get("/sites/joes-pipes/")
    assert response.status_code == 503
    assert "temporarily unavailable" in response.content.decode()
    assert client.get("/sites/joes-pipes/raw/").status_code == 404


def test_unknown_slug_is_404(client):
    assert client.get("/sites/no-such-site/").status_code == 404
    assert client.get("/sites/no-such-site/raw/").status_code == 404


def test_site_without_a_current_version_has_no_document(client):
    SiteFactory(slug="empty-site")
    assert client.get("/sites/empty-site/").status_code == 200
    assert client.get("/sites/empty-site/raw/").status_code == 404


def test_business_name_is_escaped(client):
    SiteFactory(slug="xss", business_name='"><script>alert(1)</script>')
    body = client.get("/sites/xss/").content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body


def test_site_page_query_count_is_fixed(client, site, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        client.get("/sites/joes-pipes/")
