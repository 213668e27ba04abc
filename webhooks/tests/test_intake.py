import json
import time

import pytest
from django.db import OperationalError
from django.test import override_settings
from freezegun import freeze_time

from webhooks.models import WebhookEvent
from webmagic.webhook_signing import signed_headers

from .helpers import TEST_SECRET, WEBHOOK_URL, event_body, http_headers, post_event

pytestmark = pytest.mark.django_db

OTHER_SECRET = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
UNKNOWN = {"event_type": "something.new", "id": "xx_1", "live_mode": False}


def test_a_signed_delivery_is_stored_once_and_acknowledged(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_event(client, UNKNOWN, msg_id="msg_one")
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.delivery_id, event.event_type, event.object_id, event.live_mode) == ("msg_one", "something.new", "xx_1", False)
    assert event.status == WebhookEvent.Status.RECEIVED
    assert json.loads(event.raw_body) == UNKNOWN and event.payload == UNKNOWN
    assert len(callbacks) == 1  # processing is enqueued after commit, not run in the request


def test_a_duplicate_delivery_is_acknowledged_and_not_enqueued_again(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post_event(client, UNKNOWN, msg_id="msg_dup")
        second = post_event(client, UNKNOWN, msg_id="msg_dup")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert WebhookEvent.objects.count() == 1
    assert len(callbacks) == 1


def test_webhook_prefixed_headers_are_accepted(client):
    assert post_event(client, UNKNOWN, prefix="webhook-").status_code == 200
    assert WebhookEvent.objects.count() == 1


@override_settings(RECURRENTE_WEBHOOK_SECRETS=[OTHER_SECRET, TEST_SECRET])
def test_any_configured_secret_verifies_during_rotation(client):
    assert post_event(client, UNKNOWN, secret=TEST_SECRET).status_code == 200
    assert post_event(client, UNKNOWN, secret=OTHER_SECRET).status_code == 200
    assert WebhookEvent.objects.count() == 2


def test_the_official_svix_vector_passes_signature_verification(client):
    # pytest.ini configures the vector's own secret; its body has no event_type, so the
    # delivery passes the signature and is then refused as "not one of Recurrente's events".
    headers = {"svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "svix-timestamp": "1614265330",
               "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    with freeze_time("2021-02-25 15:02:10"):  # 1614265330
        response = client.post(WEBHOOK_URL, data=b'{"test": 2432232314}', content_type="application/json", **http_headers(headers))
    assert response.status_code == 400
    assert response.json()["error"] == "event_type missing or malformed"
    with freeze_time("2021-02-25 15:02:10"):
        headers["svix-signature"] = "v1,h0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        tampered = client.post(WEBHOOK_URL, data=b'{"test": 2432232314}', content_type="application/json", **http_headers(headers))
    assert tampered.status_code == 401


def _signed(body: bytes, **overrides) -> dict:
    headers = signed_headers(secret=TEST_SECRET, msg_id="msg_bad", body=body)
    headers.update(overrides)
    return headers


GOOD = event_body(UNKNOWN)
NOW = int(time.time())


@pytest.mark.parametrize(
    "body, headers, status",
    [
        pytest.param(GOOD, {}, 400, id="no-headers"),
        pytest.param(GOOD, {k: v for k, v in _signed(GOOD).items() if k != "svix-id"}, 400, id="missing-id"),
        pytest.param(GOOD, {k: v for k, v in _signed(GOOD).items() if k != "svix-timestamp"}, 400, id="missing-timestamp"),
        pytest.param(GOOD, {k: v for k, v in _signed(GOOD).items() if k != "svix-signature"}, 400, id="missing-signature"),
        pytest.param(GOOD, _signed(GOOD, **{"svix-timestamp": "12ab"}), 400, id="malformed-timestamp"),
        pytest.param(GOOD, _signed(GOOD, **{"svix-signature": "v1,@@@not base64@@@"}), 400, id="bad-base64"),
        pytest.param(GOOD, _signed(GOOD, **{"svix-signature": "garbage"}), 400, id="malformed-signature"),
        pytest.param(GOOD, _signed(GOOD, **{"svix-id": "msg bad\u00e9"}), 400, id="malformed-id"),
        pytest.param(GOOD, signed_headers(secret=OTHER_SECRET, msg_id="msg_bad", body=GOOD), 401, id="wrong-secret"),
        pytest.param(GOOD.replace(b"something", b"somethinG"), _signed(GOOD), 401, id="tampered-body"),
        pytest.param(GOOD, _signed(GOOD, **{"svix-id": "msg_other"}), 401, id="id-swapped"),
    ],
)
def test_bad_deliveries_are_refused_and_nothing_is_stored(client, body, headers, status):
    response = client.post(WEBHOOK_URL, data=body, content_type="application/json", **http_headers(headers))
    assert response.status_code == status
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 86_400])
def test_stale_or_future_timestamps_are_refused(client, offset):
    response = post_event(client, UNKNOWN, timestamp=int(time.time()) + offset)
    assert response.status_code == 400
    assert "tolerance" in response.json()["error"]
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize("offset", [-290, 290])
def test_timestamps_inside_the_window_are_accepted(client, offset):
    assert post_event(client, UNKNOWN, timestamp=int(time.time()) + offset).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b'["event_type"]', id="array"),
        pytest.param(b'"payment_intent.succeeded"', id="string"),
        pytest.param(b"{}", id="no-event-type"),
        pytest.param(b'{"event_type": 5}', id="event-type-not-string"),
        pytest.param(b'{"event_type": ""}', id="event-type-empty"),
        pytest.param(b'{"event_type": "' + b"x" * 101 + b'"}', id="event-type-too-long"),
        pytest.param(b'{"event_type": "a", "n": NaN}', id="nan"),
        pytest.param(b'{"event_type": "a", "s": "\\u0000"}', id="nul-escape"),
        pytest.param(b'{"event_type": "a", "s": "\\ud800"}', id="lone-surrogate"),
        pytest.param(b'{"event_type": "a", "n": ' + b"[" * 5000 + b"]" * 5000 + b"}", id="deeply-nested"),
        pytest.param(b'{"event_type": "a", "n": ' + b"9" * 5000 + b"}", id="huge-int"),
    ],
)
def test_signed_bodies_that_are_not_a_json_event_are_refused(client, body):
    response = post_event(client, body=body)
    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0


def test_an_oversized_body_is_refused_with_413(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    payload = {**UNKNOWN, "padding": "x" * 2000}
    response = post_event(client, payload)
    assert response.status_code == 413
    assert WebhookEvent.objects.count() == 0


def test_a_body_longer_than_its_declared_length_is_still_capped(rf, settings):
    from webhooks.views import recurrente

    settings.WEBHOOK_MAX_BODY_BYTES = 100
    body = event_body({**UNKNOWN, "padding": "x" * 500})
    request = rf.post(WEBHOOK_URL, data=body, content_type="application/json", **http_headers(_signed(body)))
    request.META["CONTENT_LENGTH"] = "50"  # lies; the view must not trust it
    assert recurrente(request).status_code in (400, 401, 413)
    assert WebhookEvent.objects.count() == 0


def test_get_is_not_allowed(client):
    assert client.get(WEBHOOK_URL).status_code == 405
    assert WebhookEvent.objects.count() == 0


@override_settings(RECURRENTE_WEBHOOK_SECRETS=[])
def test_no_secret_configured_rejects_every_delivery(client):
    response = post_event(client, UNKNOWN)
    assert response.status_code == 401
    assert WebhookEvent.objects.count() == 0


def test_production_without_a_secret_fails_the_system_check(settings):
    from webmagic.checks import webhook_secret_configured

    settings.PRODUCTION = True
    settings.RECURRENTE_WEBHOOK_SECRETS = []
    assert [e.id for e in webhook_secret_configured(None)] == ["webmagic.E001"]
    settings.RECURRENTE_WEBHOOK_SECRETS = [TEST_SECRET]
    assert webhook_secret_configured(None) == []


def test_the_webhook_needs_no_csrf_token(client):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    assert post_event(csrf_client, UNKNOWN).status_code == 200


def test_a_database_failure_at_intake_answers_503_not_500(client, monkeypatch):
    from django.db import connection

    def refused(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refused)  # the database refuses every statement
    response = post_event(client, UNKNOWN)
    assert response.status_code == 503
    monkeypatch.undo()
    assert WebhookEvent.objects.count() == 0


def test_a_broker_failure_after_commit_still_acknowledges_the_stored_event(client, monkeypatch, django_capture_on_commit_callbacks):
    from webhooks import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.process_webhook_event, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(client, UNKNOWN)
    assert response.status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.RECEIVED  # the sweep will re-drive it
