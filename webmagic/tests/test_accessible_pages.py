"""Accessibility of the customer pages as the server renders them (WCAG 2.2 AA; issue 16 part 5).

Every `aria-describedby` must name ids that exist on the page (else screen readers announce
neither the help nor the error), each form field's help and error carry those ids, there is one
`h1` per page and the landmarks are there. The axe-core run in a real browser is
test_accessibility_browser.py; these tests need no browser."""

import re
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from customers.emails import set_password_path
from customers.models import CustomerUser
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory, SiteVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Page(HTMLParser):
    """The few facts about a page these tests check: ids, describedby references, tag counts."""

    def __init__(self, html: str):
        super().__init__()
        self.ids: list[str] = []
        self.described_by: dict[str, list[str]] = {}  # input id -> the ids it points at
        self.invalid: list[str] = []
        self.tags: dict[str, int] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if attrs.get("id"):
            self.ids.append(attrs["id"])
        if attrs.get("aria-describedby"):
            self.described_by[attrs.get("id") or tag] = attrs["aria-describedby"].split()
        if attrs.get("aria-invalid") == "true":
            self.invalid.append(attrs.get("id"))


def page_of(response) -> Page:
    return Page(response.content.decode())


def assert_every_description_exists(page: Page):
    assert page.described_by, "expected at least one field with aria-describedby"
    for field, ids in page.described_by.items():
        for id_ in ids:
            assert id_ in page.ids, f"{field} points at #{id_}, which is not on the page"
    duplicates = {i for i in page.ids if page.ids.count(i) > 1}
    assert not duplicates, f"ids used twice: {duplicates}"


@pytest.fixture
def preview_site(db):
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros")
    SiteVersionFactory(site=site)
    return site


@pytest.fixture
def owner():
    return CustomerFactory(email="joe@example.com", full_name="Joe Pipes")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


# --- aria-describedby names ids that exist ---------------------------------------------------------

def test_purchase_errors_are_tied_to_their_fields(client, preview_site):
    page = page_of(client.post("/sites/la-plumbing-pros/purchase/", {"full_name": "M", "email": "not-an-email"}))
    assert_every_description_exists(page)
    assert page.described_by["id_full_name"] == ["id_full_name_error"]
    assert page.described_by["id_email"] == ["id_email_error"]
    assert page.invalid == ["id_full_name", "id_email"]


def test_login_errors_are_tied_to_their_fields(client):
    page = page_of(client.post("/portal/login/", {"username": "not-an-email", "password": ""}))
    assert_every_description_exists(page)
    assert page.described_by["id_username"] == ["id_username_error"]


def test_set_password_help_and_errors_sit_under_their_own_field(client):
    user = CustomerUser.objects.create_user("maria.lopez@example.com", full_name="María López")
    form_url = client.get(set_password_path(user=user))["Location"]
    response = client.post(form_url, {"new_password1": "12345678901", "new_password2": "12345678902"})
    body = response.content.decode()
    page = Page(body)
    assert_every_description_exists(page)
    # Help on the first field; the mismatch error on the second, each in its own list item.
    assert page.described_by["id_new_password1"] == ["id_new_password1_helptext"]
    assert page.described_by["id_new_password2"] == ["id_new_password2_error"]
    second_field = body[body.index('for="id_new_password2"'):]
    assert re.search(r'<ul class="errorlist" id="id_new_password2_error"><li>[^<]*match', second_field)
    assert 'class="field-error"' not in body.replace('class="field field-error"', "")


def test_account_forms_point_at_their_help_and_errors(owner_client):
    page = page_of(owner_client.post("/portal/account/", {"action": "password", "old_password": "wrong",
                                                         "new_password1": "x", "new_password2": "y"}))
    assert_every_description_exists(page)
    assert page.described_by["id_phone"] == ["id_phone_helptext"]
    assert page.described_by["id_old_password"] == ["id_old_password_error"]


def test_portal_domain_and_edit_forms_point_at_their_help_and_errors(owner_client, owner):
    SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.ACTIVE)
    domains = page_of(owner_client.post("/portal/sites/joes-pipes/domains/", {"domain": "localhost"}))
    assert_every_description_exists(domains)
    assert domains.described_by["id_domain"] == ["id_domain_helptext", "id_domain_error"]
    edits = page_of(owner_client.post("/portal/sites/joes-pipes/edits/", {"description": ""}))
    assert_every_description_exists(edits)
    assert edits.described_by["id_description"] == ["id_description_helptext", "id_description_error"]


def test_the_password_reset_form_points_at_its_error(client):
    page = page_of(client.post("/portal/password-reset/", {"email": "nope"}))
    assert_every_description_exists(page)


# --- One error markup, focus, a heading and landmarks ----------------------------------------------

def test_failed_forms_load_the_script_that_focuses_the_first_invalid_field(client, preview_site):
    purchase = client.post("/sites/la-plumbing-pros/purchase/", {"full_name": "María", "email": "x"}).content.decode()
    assert "js/forms.js" in purchase and 'aria-invalid="true"' in purchase
    user = CustomerUser.objects.create_user("ana@example.com", full_name="Ana")
    form_url = client.get(set_password_path(user=user))["Location"]
    assert "js/forms.js" in client.get(form_url).content.decode()


@pytest.mark.parametrize("path", ["/sites/la-plumbing-pros/", "/sites/la-plumbing-pros/purchase/", "/portal/login/",
                                  "/portal/password-reset/", "/no-such-page/"])
def test_public_pages_have_exactly_one_h1(client, preview_site, path):
    assert page_of(client.get(path)).tags.get("h1") == 1


@pytest.mark.parametrize("path", ["/portal/", "/portal/sites/joes-pipes/", "/portal/sites/joes-pipes/domains/",
                                  "/portal/sites/joes-pipes/edits/", "/portal/account/"])
def test_portal_pages_have_one_h1_and_the_landmarks(owner_client, owner, path):
    SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.OWNED,
                purchased_at=timezone.now())
    page = page_of(owner_client.get(path))
    assert page.tags.get("h1") == 1
    for landmark in ("header", "nav", "main", "footer"):
        assert page.tags.get(landmark, 0) >= 1, f"no <{landmark}> on {path}"
    assert page.tags["main"] == 1 and "main" in page.ids  # the skip link's target


def test_favicon_ico_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"].endswith("img/favicon.svg")
    assert 'rel="icon"' in client.get("/portal/login/").content.decode()


# --- Portal: the next step before hosting instead of a locked page ---------------------------------

def test_before_hosting_the_site_page_offers_activation_not_the_locked_pages(owner_client, owner):
    SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.OWNED,
                purchased_at=timezone.now())
    body = owner_client.get("/portal/sites/joes-pipes/").content.decode()
    changes = body[body.index("Changes and domain"):]
    assert "come with hosting" in changes
    assert 'action="/portal/sites/joes-pipes/hosting/start/"' in changes and "Activate hosting — $95/month" in changes
    assert 'href="/portal/sites/joes-pipes/edits/"' not in body and 'href="/portal/sites/joes-pipes/domains/"' not in body


def test_a_live_site_page_links_to_changes_and_domains(owner_client, owner):
    SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.ACTIVE,
                purchased_at=timezone.now())
    body = owner_client.get("/portal/sites/joes-pipes/").content.decode()
    assert 'href="/portal/sites/joes-pipes/edits/"' in body and 'href="/portal/sites/joes-pipes/domains/"' in body
    assert "come with hosting" not in body


@pytest.mark.parametrize("page", ["domains", "edits"])
def test_the_locked_pages_offer_the_activation_too(owner_client, owner, page):
    SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.SUSPENDED,
                purchased_at=timezone.now())
    body = owner_client.get(f"/portal/sites/joes-pipes/{page}/").content.decode()
    assert 'action="/portal/sites/joes-pipes/hosting/start/"' in body and "Reactivate hosting" in body


def test_the_txt_record_has_a_copy_button_and_stays_on_one_line(owner_client, owner):
    from sites import services

    site = SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.ACTIVE)
    record = services.domain_claim(site_id=site.pk, user=owner, domain="www.joespipes.com")
    body = owner_client.get("/portal/sites/joes-pipes/domains/").content.decode()
    assert f'<code id="txt-value-{record.pk}" tabindex="0">{record.txt_record_value}</code>' in body
    assert f'data-copy="txt-value-{record.pk}"' in body and f'data-copy="txt-name-{record.pk}"' in body
    assert "js/copy.js" in body


def test_the_server_error_page_renders_without_context_and_has_icon_h1_and_landmarks():
    from django.template import Context
    from django.template.loader import get_template

    # Django's server_error view renders 500.html with an empty context: it must work so.
    html = get_template("500.html").template.render(Context())
    page = Page(html)
    assert page.tags.get("h1") == 1 and page.tags.get("main") == 1 and page.tags.get("header") == 1
    assert 'rel="icon"' in html
