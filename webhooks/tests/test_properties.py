"""Property-based tests (hypothesis): no input makes the webhook endpoint answer 500, and nothing
is ever stored without a valid signature."""

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhooks.models import WebhookEvent
from webmagic.webhook_signing import SignatureError, sign, signed_headers, verify

from .helpers import TEST_SECRET, WEBHOOK_URL, http_headers

pytestmark = pytest.mark.django_db
EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

header_values = st.one_of(st.none(), st.text(max_size=120), st.from_regex(r"v1,[A-Za-z0-9+/=]{0,60}", fullmatch=True))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def post(client, body: bytes, headers: dict):
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **http_headers(headers))


@EXAMPLES
@given(body=st.binary(max_size=2048), msg_id=header_values, timestamp=header_values, signature=header_values,
       prefix=st.sampled_from(["svix-", "webhook-"]))
def test_unsigned_or_badly_signed_input_is_refused_with_4xx_and_never_stored(client, body, msg_id, timestamp, signature, prefix):
    headers = {f"{prefix}{name}": value for name, value in
               (("id", msg_id), ("timestamp", timestamp), ("signature", signature)) if value is not None}
    headers = {k: v for k, v in headers.items() if v.isprintable() and "\n" not in v}
    before = WebhookEvent.objects.count()
    response = post(client, body, headers)
    assert 400 <= response.status_code < 500
    assert WebhookEvent.objects.count() == before


@EXAMPLES
@given(body=st.binary(max_size=4096))
def test_any_correctly_signed_body_gets_2xx_or_4xx_never_500(client, body):
    msg_id = f"msg_prop{time.monotonic_ns()}"
    before = WebhookEvent.objects.count()
    response = post(client, body, signed_headers(secret=TEST_SECRET, msg_id=msg_id, body=body))
    assert response.status_code in (200, 400, 413)
    stored = WebhookEvent.objects.count() - before
    assert stored == (1 if response.status_code == 200 else 0)


@EXAMPLES
@given(payload=st.dictionaries(st.text(max_size=12), json_values, max_size=6), event_type=st.text(min_size=1, max_size=40))
def test_any_signed_json_object_with_an_event_type_is_stored_once_and_processing_never_crashes(
    client, payload, event_type, django_capture_on_commit_callbacks
):
    payload["event_type"] = event_type
    body = json.dumps(payload).encode()
    msg_id = f"msg_prop{time.monotonic_ns()}"
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, body, signed_headers(secret=TEST_SECRET, msg_id=msg_id, body=body))
    if response.status_code == 200:
        event = WebhookEvent.objects.get(delivery_id=msg_id)
        # Whatever the shape, processing ends in a recorded state instead of an unhandled error.
        assert event.status in {WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED, WebhookEvent.Status.FAILED}
    else:
        assert response.status_code == 400 and not WebhookEvent.objects.filter(delivery_id=msg_id).exists()


@EXAMPLES
@given(body=st.binary(max_size=512), flip=st.integers(min_value=0, max_value=511))
def test_any_change_to_a_signed_body_breaks_the_signature(body, flip):
    if not body:
        return
    now = int(time.time())
    signature = sign(secret=TEST_SECRET, msg_id="msg_x", timestamp=now, body=body)
    tampered = bytearray(body)
    tampered[flip % len(body)] ^= 0x01
    headers = {"svix-id": "msg_x", "svix-timestamp": str(now), "svix-signature": signature}
    assert verify(headers=headers, body=body, secrets=[TEST_SECRET]) == "msg_x"
    with pytest.raises(SignatureError):
        verify(headers=headers, body=bytes(tampered), secrets=[TEST_SECRET])
