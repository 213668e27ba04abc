"""The portal's site actions while the rate-limit cache (Redis) is down: per signed-in owner, they
fail open (webmagic/ratelimit.py); the database still caps open requests and domains per site."""

import pytest
from django.core import mail

from customers.tests.factories import CustomerFactory
from sites.models import DomainVerificationRecord, EditRequest, Site
from sites.tests.factories import SiteFactory
from webmagic.tests.outage import cache_unreachable

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(client, settings):
    cache_unreachable(settings)
    owner = CustomerFactory(email="maria@example.com")
    SiteFactory(slug="joes-pipes", owner=owner, status=Site.Status.ACTIVE)
    client.force_login(owner)
    return client


def test_an_owner_can_still_ask_for_a_change(owner_client):
    response = owner_client.post("/portal/sites/joes-pipes/edits/", {"description": "Change the hours"})
    assert response.status_code == 303
    assert EditRequest.objects.get().description == "Change the hours"


def test_an_owner_can_still_add_a_domain(owner_client):
    response = owner_client.post("/portal/sites/joes-pipes/domains/", {"domain": "www.joespipes.com"})
    assert response.status_code == 303
    assert DomainVerificationRecord.objects.get().domain == "www.joespipes.com"
    assert [m for m in mail.outbox if m.to == ["alerts@webmagic.test"]] == []  # no error mail to ADMINS
