import json
import re

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
        return 201, {}, json.dumps(body)

    recurrente_api.add_callback(responses_lib.POST, f"{API}/checkouts", callback=create, content_type="application/json")
    return recurrente_api


@pytest.fixture
def recurrente_checkouts(recurrente_api):
    """GET /checkouts/{id}: "unpaid" unless a test sets a status, an HTTP error code, an exception
    or raw body bytes. `recurrente_checkouts["_seen"]` lists the ids asked about, in order."""
    answers: dict[str, object] = {}
    seen: list[str] = []

    def get(request):
        checkout_id = request.url.rsplit("/", 1)[1]
        seen.append(checkout_id)
        answer = answers.get(checkout_id, "unpaid")
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return answer, {}, json.dumps({"message": "error"})
        if isinstance(answer, bytes):
            return 200, {}, answer
        if answer == "paid":
            body = recurrente_fixture("api/get_checkout.paid.response.json")
            body["payment"]["id"] = f"pa_{checkout_id[3:]}"
            body["latest_intent"]["id"] = f"in_{checkout_id[3:]}"
        else:
            body = recurrente_fixture("api/get_checkout.unpaid.response.json")
            body["status"] = answer
        body["id"] = checkout_id
        return 200, {}, json.dumps(body)

    recurrente_api.add_callback(
        responses_lib.GET, re.compile(rf"{re.escape(API)}/checkouts/\w+"), callback=get, content_type="application/json"
    )
    answers["_seen"] = seen
    return answers


@pytest.fixture
def preview_site(db):
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros")
    SiteVersionFactory(site=site)
    return site
