"""Signed Recurrente deliveries for tests: `post_event(client, payload)` posts a payload exactly as
Svix would (raw JSON body, svix-* headers signed with the test secret from pytest.ini)."""

import json
import uuid

from checkout.tests.fixtures import recurrente_fixture
from webmagic.webhook_signing import signed_headers

TEST_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # RECURRENTE_WEBHOOK_SECRETS in pytest.ini
WEBHOOK_URL = "/webhooks/recurrente/"


def event_body(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def http_headers(headers: dict) -> dict:
    """{"svix-id": …} → {"HTTP_SVIX_ID": …}, the test client's way of sending headers."""
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def post_event(
    client, payload: dict | None = None, *, msg_id: str | None = None, secret: str = TEST_SECRET, timestamp: int | None = None,
    prefix: str = "svix-", body: bytes | None = None, extra_headers: dict | None = None,
):
    """POST one signed delivery. `body` overrides the JSON encoding of `payload` (raw bytes are
    signed as given). Returns the response; the svix id used is `response.msg_id`."""
    body = event_body(payload) if body is None else body
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    headers = signed_headers(secret=secret, msg_id=msg_id, body=body, timestamp=timestamp, prefix=prefix)
    headers.update(extra_headers or {})
    response = client.post(WEBHOOK_URL, data=body, content_type="application/json", **http_headers(headers))
    response.msg_id = msg_id
    return response


def payment_event(
    name: str = "payment_intent.succeeded.purchase.json", *, session=None, checkout_id: str | None = None,
    payment_id: str | None = None, intent_id: str | None = None, amount_in_cents: int | None = None,
    currency: str | None = None, subscription_id: str | None = None, email: str | None = None,
) -> dict:
    """A Recurrente payment event fixture rewritten to point at one of our checkout sessions."""
    payload = recurrente_fixture(f"events/{name}")
    checkout = payload.get("checkout") or {}
    if session is not None:
        checkout_id = checkout_id or session.recurrente_checkout_id
        if isinstance(checkout.get("metadata"), dict):
            checkout["metadata"]["checkout_session_id"] = str(session.pk)
            checkout["metadata"]["site_id"] = str(session.site_id)
    if checkout_id:
        checkout["id"] = checkout_id
    if payment_id:
        for holder in (payload.get("payment"), checkout.get("payment")):
            if isinstance(holder, dict):
                holder["id"] = payment_id
        if str(payload.get("id", "")).startswith("pa_"):
            payload["id"] = payment_id
    if intent_id:
        if isinstance(checkout.get("latest_intent"), dict):
            checkout["latest_intent"]["id"] = intent_id
        if str(payload.get("id", "")).startswith("in_"):
            payload["id"] = intent_id
    if amount_in_cents is not None:
        payload["amount_in_cents"] = amount_in_cents
        if "total_in_cents" in checkout:
            checkout["total_in_cents"] = amount_in_cents
    if currency is not None:
        payload["currency"] = currency
    if subscription_id:
        for holder in (payload.get("payment"), checkout.get("payment")):
            if isinstance(holder, dict) and isinstance(holder.get("paymentable"), dict):
                holder["paymentable"]["id"] = subscription_id
    if email is not None and isinstance(payload.get("customer"), dict):
        payload["customer"]["email"] = email
    return payload


def subscription_event(name: str = "subscription.create.json", *, subscription_id: str | None = None,
                       payment_id: str | None = None, created_at: str | None = None) -> dict:
    payload = recurrente_fixture(f"events/{name}")
    if subscription_id:
        payload["id"] = subscription_id
        payload["payment"]["paymentable"]["id"] = subscription_id
    if payment_id:
        payload["payment"]["id"] = payment_id
    if created_at:
        payload["created_at"] = created_at
    return payload
