"""A paid sandbox checkout no longer offers to cancel (issue 16, part 6): it leads back to us."""

import pytest
from django.test import override_settings

from checkout import sandbox
from checkout.models import CheckoutSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox_page(client, preview_site, monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_send_later", lambda **kwargs: None)  # no webhook deliveries here
    with override_settings(RECURRENTE_SANDBOX=True, SITE_URL="http://testserver"):
        response = client.post("/sites/la-plumbing-pros/purchase/", {"full_name": "Ana Díaz", "email": "ana@example.com"})
        yield "/" + response["Location"].split("/", 3)[3], CheckoutSession.objects.get()


def test_an_unpaid_checkout_offers_cancel(client, sandbox_page):
    path, _ = sandbox_page
    body = client.get(path).content.decode()
    assert "Cancel and go back" in body and "Continue to WebMagic" not in body


def test_a_paid_checkout_offers_no_cancel_but_the_way_back(client, sandbox_page):
    path, session = sandbox_page
    assert client.post(path, {"action": "pay"}).status_code == 303
    body = client.get(path).content.decode()
    assert "This checkout is paid." in body
    assert "Cancel and go back" not in body and "Pay $495" not in body
    assert f'href="http://testserver/checkout/success/?session={session.pk}"' in body and "Continue to WebMagic" in body
