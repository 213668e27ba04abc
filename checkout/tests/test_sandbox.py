"""Sandbox mode: the hosted-page imitation and its signed deliveries over real HTTP."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from checkout.models import CheckoutSession, SandboxCheckout
from checkout.recurrente import RecurrenteValidationError
from checkout.sandbox import SandboxClient
from webmagic.webhook_signing import verify

pytestmark = pytest.mark.django_db

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Recorder(BaseHTTPRequestHandler):
    """A stand-in webhook endpoint that records what arrives (and answers like ours would)."""

    received: list = []
    answer = 200

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        self.send_response(self.answer)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    Recorder.received = []
    Recorder.answer = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with override_settings(SITE_URL=f"http://127.0.0.1:{server.server_port}", RECURRENTE_SANDBOX=True,
                           RECURRENTE_WEBHOOK_SECRETS=[SECRET]):
        yield Recorder
    server.shutdown()


def start_purchase(client):
    response = client.post("/sites/la-plumbing-pros/purchase/", {"full_name": "Ana Díaz", "email": "ana@example.com"})
    assert response.status_code == 303
    return response["Location"], CheckoutSession.objects.get()


def deliveries(recorder):
    out = []
    for item in recorder.received:
        msg_id = verify(headers=item["headers"], body=item["body"], secrets=[SECRET])  # raises if badly signed
        out.append((msg_id, json.loads(item["body"])))
    return out


def test_purchase_goes_to_the_sandbox_page_showing_amount_and_site(client, preview_site, endpoint):
    url, session = start_purchase(client)
    assert url.startswith("http://127.0.0.1:") and "/sandbox/recurrente/checkout/ch_sbx" in url
    body = client.get(sandbox_path(url)).content.decode()
    assert "$495" in body and "Website — LA Plumbing Pros" in body
    assert "Pay $495" in body and "Decline" in body and "SANDBOX" in body


def sandbox_path(url):
    return "/" + url.split("/", 3)[3]


def test_pay_sends_the_legacy_and_unified_events_signed_over_http(client, preview_site, endpoint, django_capture_on_commit_callbacks):
    url, session = start_purchase(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(sandbox_path(url), {"action": "pay"})
    assert response.status_code == 303
    assert response["Location"].endswith(f"/checkout/success/?session={session.pk}")
    got = deliveries(endpoint)
    assert [body["event_type"] for _, body in got] == ["payment_intent.succeeded", "intent.succeeded"]
    assert all(item["path"] == "/webhooks/recurrente/" for item in endpoint.received)
    legacy, unified = got[0][1], got[1][1]
    assert got[0][0] != got[1][0]  # two deliveries, two svix ids
    assert legacy["checkout"]["id"] == unified["checkout"]["id"] == session.recurrente_checkout_id
    assert legacy["payment"]["id"] == unified["payment"]["id"] and legacy["payment"]["id"].startswith("pa_")
    assert legacy["amount_in_cents"] == unified["amount_in_cents"] == 49500
    assert legacy["checkout"]["metadata"]["checkout_session_id"] == str(session.pk)
    assert legacy["live_mode"] is False


def test_paying_twice_sends_nothing_more(client, preview_site, endpoint, django_capture_on_commit_callbacks):
    url, _ = start_purchase(client)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(sandbox_path(url), {"action": "pay"})
        client.post(sandbox_path(url), {"action": "pay"})
    assert len(endpoint.received) == 2


def test_decline_sends_payment_failed_and_keeps_the_page_payable(client, preview_site, endpoint, django_capture_on_commit_callbacks):
    url, session = start_purchase(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(sandbox_path(url), {"action": "decline"})
    assert response.status_code == 303 and response["Location"].endswith("?declined=1")
    [(_, body)] = deliveries(endpoint)
    assert body["event_type"] == "payment_intent.failed"
    assert body["checkout"] == {"id": session.recurrente_checkout_id} and body["failure_reason"]
    page = client.get(response["Location"]).content.decode()
    assert "declined" in page and "Pay $495" in page
    assert 'href="http://127.0.0.1' in page and "?checkout=cancelled" in page  # the way back


def test_recurring_checkout_sends_subscription_create_and_its_payment(endpoint, db, django_capture_on_commit_callbacks):
    from checkout.sandbox import sandbox_checkout_pay

    created = SandboxClient().create_checkout({
        "items": [{"name": "Website hosting", "amount_in_cents": 9500, "currency": "USD", "quantity": 1,
                   "charge_type": "recurring", "billing_interval": "month", "billing_interval_count": 1}],
        "success_url": "http://x/", "cancel_url": "http://x/", "metadata": {"kind": "subscription"},
    })
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_checkout_pay(checkout_id=created["id"])
    got = deliveries(endpoint)
    assert [body["event_type"] for _, body in got] == ["subscription.create", "payment_intent.succeeded"]
    subscription_id = got[0][1]["id"]
    assert subscription_id.startswith("su_")
    assert got[1][1]["payment"]["paymentable"] == {**got[1][1]["payment"]["paymentable"], "type": "Subscription", "id": subscription_id}
    assert SandboxClient().get_subscription(subscription_id)["checkout"]["id"] == created["id"]


def test_failed_delivery_is_retried_with_the_same_message_id(client, preview_site, endpoint, monkeypatch):
    from celery.exceptions import Retry

    from checkout import sandbox

    countdowns = []
    def record_retry(exc, countdown):
        countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(sandbox.sandbox_deliver, "retry", record_retry)
    url, session = start_purchase(client)
    from checkout.sandbox import sandbox_checkout_pay

    sandbox_checkout_pay(checkout_id=session.recurrente_checkout_id)  # on-commit sends are not run here
    endpoint.answer = 500
    args = [session.recurrente_checkout_id, "payment_intent.succeeded"]
    for attempt in range(2):
        result = sandbox.sandbox_deliver.apply(args=args, retries=attempt, throw=False)
        assert result.state == "RETRY"
    endpoint.answer = 200
    assert sandbox.sandbox_deliver.apply(args=args, retries=2).successful()
    assert countdowns == [5, 15]
    ids = {verify(headers=item["headers"], body=item["body"], secrets=[SECRET]) for item in endpoint.received}
    assert len(endpoint.received) == 3 and len(ids) == 1  # Svix keeps the id across retries


def test_sandbox_client_refuses_what_recurrente_refuses(db):
    with pytest.raises(RecurrenteValidationError):
        SandboxClient().create_checkout({"items": [
            {"name": "a", "amount_in_cents": 100, "currency": "USD", "charge_type": "one_time"},
            {"name": "b", "amount_in_cents": 100, "currency": "USD", "charge_type": "recurring"},
        ]})
    with pytest.raises(RecurrenteValidationError):
        SandboxClient().create_checkout({"items": [{"amount_in_cents": 100, "charge_type": "one_time"}], "metadata": {"n": 1}})
    assert SandboxCheckout.objects.count() == 0


def test_sandbox_answers_get_checkout_like_recurrente(client, preview_site, endpoint, django_capture_on_commit_callbacks):
    url, session = start_purchase(client)
    assert SandboxClient().get_checkout(session.recurrente_checkout_id)["status"] == "unpaid"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(sandbox_path(url), {"action": "pay"})
    paid = SandboxClient().get_checkout(session.recurrente_checkout_id)
    assert paid["status"] == "paid" and paid["payment"]["id"].startswith("pa_")


def test_sandbox_is_404_when_not_in_sandbox_mode(client, preview_site, endpoint):
    url, _ = start_purchase(client)
    with override_settings(RECURRENTE_SANDBOX=False):
        assert client.get(sandbox_path(url)).status_code == 404
        assert client.post(sandbox_path(url), {"action": "pay"}).status_code == 404


def test_sandbox_pages_refuse_other_methods_and_unknown_actions(client, preview_site, endpoint):
    url, _ = start_purchase(client)
    assert client.put(sandbox_path(url)).status_code == 405
    assert client.post(sandbox_path(url), {"action": "steal"}).status_code == 400
    assert client.get(sandbox_path(url) + "event/").status_code == 405
    assert client.post(sandbox_path(url) + "event/", {"event_type": "subscription.cancel"}).status_code == 404  # staff only
