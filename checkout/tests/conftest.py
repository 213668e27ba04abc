import pytest
import responses as responses_lib
from django.test import override_settings

from checkout.tests.fixtures import recurrente_fixture
from sites.tests.factories import SiteFactory, SiteVersionFactory

API = "https://recurrente.test/api"


@pytest.fixture
def recurrente_api():
    """Real-Recurrente mode (a secret key, no sandbox) with the API faked at the HTTP boundary."""
    with override_settings(RECURRENTE_SANDBOX=False, RECURRENTE_SECRET_KEY="sk_test_fake", RECURRENTE_API_URL=API), \
            responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def checkout_created(recurrente_api):
    """POST /checkouts answers like the fixture, with a fresh id per call."""
    counter = {"n": 0}

    def create(request):
        counter["n"] += 1
        body = recurrente_fixture("api/create_checkout.response.json")
        body["id"] = f"ch_created{counter['n']:04d}"
        body["checkout_url"] = f"https://app.recurrente.com/checkout-session/{body['id']}"
        import json

        return 201, {}, json.dumps(body)

    recurrente_api.add_callback(responses_lib.POST, f"{API}/checkouts", callback=create, content_type="application/json")
    return recurrente_api


@pytest.fixture
def preview_site(db):
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros")
    SiteVersionFactory(site=site)
    return site
