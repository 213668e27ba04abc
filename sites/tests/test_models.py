import pytest
from django.db import IntegrityError, transaction

from sites.models import Site, SiteVersion
from sites.services import site_version_make_current, site_version_publish
from sites.tests.factories import SiteFactory, SiteVersionFactory

pytestmark = pytest.mark.django_db


def test_duplicate_slug_is_refused():
    SiteFactory(slug="la-plumbing-pros")
    with pytest.raises(IntegrityError):
        SiteFactory(slug="la-plumbing-pros")


def test_prices_default_to_495_and_95_as_decimals():
    site = SiteFactory()
    site.refresh_from_db()
    assert str(site.purchase_amount) == "495.00"
    assert str(site.monthly_amount) == "95.00"


def test_sold_site_needs_an_owner():
    with pytest.raises(IntegrityError):
        SiteFactory(status=Site.Status.OWNED, owner=None)


def test_price_must_be_positive():
    with pytest.raises(IntegrityError):
        SiteFactory(purchase_amount=0)


def test_only_one_current_version_per_site():
    version = SiteVersionFactory(is_current=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        SiteVersionFactory(site=version.site, is_current=True)
    SiteVersionFactory(site=version.site, is_current=False)  # non-current versions are fine


def test_publish_makes_the_new_version_current_and_rollback_restores_the_old_one():
    site = SiteFactory()
    first = site_version_publish(site=site, html="<p>one</p>")
    second = site_version_publish(site=site, html="<p>two</p>")
    assert (first.number, second.number) == (1, 2)
    assert list(site.versions.filter(is_current=True)) == [second]
    site_version_make_current(version=first)
    assert list(SiteVersion.objects.filter(site=site, is_current=True).values_list("number", flat=True)) == [1]
