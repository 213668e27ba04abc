"""Sites admin: versions inline, publish and roll back, transfer ownership, search, query counts."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from checkout.models import Subscription
from checkout.tests.factories import SubscriptionFactory
from customers.tests.factories import CustomerFactory
from sites import services
from sites.models import Site, SiteVersion
from sites.tests.factories import SiteFactory, SiteVersionFactory
from webmagic.tests.admin_queries import assert_constant_queries

pytestmark = pytest.mark.django_db

SITES = "/admin/sites/site/"


def flash(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def change_url(site):
    return reverse("admin:sites_site_change", args=[site.pk])


@pytest.fixture
def site_with_versions(db):
    site = SiteFactory(slug="la-plumbing-pros")
    SiteVersionFactory(site=site, number=1, is_current=False, note="first draft", html="<p>one</p>")
    SiteVersionFactory(site=site, number=2, is_current=True, note="new photos", html="<p>two</p>")
    return site


def current_number(site):
    return SiteVersion.objects.get(site=site, is_current=True).number


# --- Versions ---------------------------------------------------------------------------------

def test_change_page_lists_versions_read_only_with_a_roll_back_button(staff_client, site_with_versions):
    body = staff_client.get(change_url(site_with_versions)).content.decode()
    assert "first draft" in body and "new photos" in body
    assert 'name="versions-0-note"' not in body and 'name="versions-0-html"' not in body  # read-only, html not shown
    v1 = SiteVersion.objects.get(site=site_with_versions, number=1)
    assert reverse("admin:sites_site_make_current", args=[site_with_versions.pk, v1.pk]) in body
    assert "Publish a new version" in body


def test_roll_back_asks_first_then_makes_the_version_current(staff_client, site_with_versions):
    v1 = SiteVersion.objects.get(site=site_with_versions, number=1)
    url = reverse("admin:sites_site_make_current", args=[site_with_versions.pk, v1.pk])
    page = staff_client.get(url)
    assert page.status_code == 200 and "Make it current" in page.content.decode()
    assert current_number(site_with_versions) == 2  # GET changes nothing

    response = staff_client.post(url, follow=True)
    assert current_number(site_with_versions) == 1
    assert ("success", "Version 1 of la-plumbing-pros is now current.") in flash(response)
    # The public page now serves version 1.
    assert "one" in staff_client.get(reverse("sites:document", args=[site_with_versions.slug])).content.decode()


def test_a_version_of_another_site_cannot_be_made_current_through_this_one(staff_client, site_with_versions):
    other = SiteVersionFactory(is_current=False)
    url = reverse("admin:sites_site_make_current", args=[site_with_versions.pk, other.pk])
    assert staff_client.post(url).status_code == 404


def test_publish_stores_the_next_version_and_makes_it_current(staff_client, site_with_versions):
    url = reverse("admin:sites_site_publish", args=[site_with_versions.pk])
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"html": "", "note": "x"}).status_code == 200  # required: form shown again
    assert SiteVersion.objects.filter(site=site_with_versions).count() == 2

    response = staff_client.post(url, {"html": "<html><body>three</body></html>", "note": "spring menu"}, follow=True)
    version = SiteVersion.objects.get(site=site_with_versions, is_current=True)
    assert (version.number, version.note, version.html) == (3, "spring menu", "<html><body>three</body></html>")
    assert ("success", "Published version 3 of la-plumbing-pros; it is now current.") in flash(response)


def test_version_list_action_rolls_back_one_version_per_site(staff_client, site_with_versions):
    v1 = SiteVersion.objects.get(site=site_with_versions, number=1)
    response = staff_client.post("/admin/sites/siteversion/", {"action": "make_current", "_selected_action": [v1.pk]}, follow=True)
    assert current_number(site_with_versions) == 1
    assert flash(response) == [("success", "la-plumbing-pros: version 1 is now current.")]
    both = SiteVersion.objects.filter(site=site_with_versions).values_list("pk", flat=True)
    response = staff_client.post("/admin/sites/siteversion/", {"action": "make_current", "_selected_action": list(both)}, follow=True)
    assert flash(response)[0][0] == "warning" and current_number(site_with_versions) == 1


def test_non_staff_cannot_publish(client, site_with_versions):
    client.force_login(CustomerFactory())
    response = client.post(reverse("admin:sites_site_publish", args=[site_with_versions.pk]), {"html": "<p>x</p>"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert SiteVersion.objects.filter(site=site_with_versions).count() == 2


# --- Transfer ownership -----------------------------------------------------------------------

@pytest.fixture
def owned_site(db):
    return SiteFactory(slug="bakery", status=Site.Status.OWNED, owner=CustomerFactory(email="old@example.com"))


def transfer(client, site, email):
    return client.post(reverse("admin:sites_site_transfer", args=[site.pk]), {"email": email}, follow=True)


def test_transfer_moves_the_site_to_the_account_with_that_email(staff_client, owned_site):
    new_owner = CustomerFactory(email="new@example.com")
    response = transfer(staff_client, owned_site, "  NEW@example.com ")
    owned_site.refresh_from_db()
    assert owned_site.owner == new_owner
    assert ("success", "bakery now belongs to new@example.com (was old@example.com).") in flash(response)


def test_transfer_to_an_unknown_email_shows_the_form_again(staff_client, owned_site):
    response = transfer(staff_client, owned_site, "nobody@example.com")
    assert "No active customer account has this email" in response.content.decode()
    owned_site.refresh_from_db()
    assert owned_site.owner.email == "old@example.com"


def test_transfer_is_refused_while_hosting_is_billed_to_the_current_owner(staff_client, owned_site):
    owned_site.status = Site.Status.ACTIVE
    owned_site.save()
    subscription = SubscriptionFactory(site=owned_site, user=owned_site.owner, status=Subscription.Status.ACTIVE)
    CustomerFactory(email="new@example.com")
    response = transfer(staff_client, owned_site, "new@example.com")
    (level, text), = flash(response)
    assert level == "error" and subscription.recurrente_subscription_id in text and "Cancel it first" in text
    owned_site.refresh_from_db()
    assert owned_site.owner.email == "old@example.com"

    # Once hosting is cancelled (it still runs to the end of the paid period) the site can move.
    Subscription.objects.filter(pk=subscription.pk).update(cancel_requested_at=owned_site.created_at)
    transfer(staff_client, owned_site, "new@example.com")
    owned_site.refresh_from_db()
    assert owned_site.owner.email == "new@example.com"
    subscription.refresh_from_db()
    assert subscription.user.email == "old@example.com"  # who paid stays who paid


def test_a_preview_site_or_the_same_owner_cannot_be_transferred(owned_site):
    preview = SiteFactory()
    with pytest.raises(services.TransferRefused, match="only a bought site"):
        services.site_ownership_transfer(site_id=preview.pk, new_owner_id=owned_site.owner_id, staff_user=None)
    with pytest.raises(services.TransferRefused, match="already belongs"):
        services.site_ownership_transfer(site_id=owned_site.pk, new_owner_id=owned_site.owner_id, staff_user=None)
    inactive = CustomerFactory(is_active=False)
    with pytest.raises(services.TransferRefused, match="active customer"):
        services.site_ownership_transfer(site_id=owned_site.pk, new_owner_id=inactive.pk, staff_user=None)


def test_transfer_action_opens_the_form_for_exactly_one_site(staff_client, owned_site):
    response = staff_client.post(SITES, {"action": "transfer_ownership", "_selected_action": [owned_site.pk]})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:sites_site_transfer", args=[owned_site.pk])
    other = SiteFactory()
    response = staff_client.post(SITES, {"action": "transfer_ownership", "_selected_action": [owned_site.pk, other.pk]}, follow=True)
    assert flash(response) == [("warning", "Select exactly one site to transfer.")]


# --- List -------------------------------------------------------------------------------------

def test_search_by_owner_email_slug_or_title_and_filter_by_status(staff_client, owned_site):
    SiteFactory(slug="florist", business_name="Rosa Flowers")
    assert "bakery" in staff_client.get(SITES + "?q=old@example.com").content.decode()
    assert "bakery" not in staff_client.get(SITES + "?q=Rosa").content.decode()
    assert "florist" in staff_client.get(SITES + "?q=Rosa").content.decode()
    owned_only = staff_client.get(SITES + "?status__exact=owned").content.decode()
    assert "bakery" in owned_only and "florist" not in owned_only


def test_site_changelist_runs_a_fixed_number_of_queries(staff_client):
    def make(n):
        for _ in range(n):
            SiteFactory(status=Site.Status.OWNED, owner=CustomerFactory(password=None))

    assert_constant_queries(staff_client, SITES, make)


def test_site_change_page_runs_a_fixed_number_of_queries_whatever_the_versions(staff_client):
    site = SiteFactory()
    numbers = iter(range(1, 100))

    def make(n):
        for _ in range(n):
            SiteVersionFactory(site=site, number=next(numbers), is_current=False)

    assert_constant_queries(staff_client, change_url(site), make)


def test_version_changelist_runs_a_fixed_number_of_queries(staff_client):
    assert_constant_queries(staff_client, "/admin/sites/siteversion/", lambda n: [SiteVersionFactory() for _ in range(n)])


def test_status_and_purchase_facts_are_not_editable_on_a_site(staff_client, owned_site):
    body = staff_client.get(change_url(owned_site)).content.decode()
    for field in ("status", "owner", "purchased_at", "purchase_transaction_id"):
        assert f'name="{field}"' not in body and f'name="{field}_0"' not in body
    assert 'name="business_name"' in body
    assert 'name="status"' in staff_client.get(SITES + "add/").content.decode()  # a new preview site can be added
