"""Every refused delivery is counted per reason and minute, through the real view, without storing
anything of what was sent, and without ever turning the 4xx answer into a 500."""

import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, OperationalError, connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from freezegun import freeze_time

from webhooks import services
from webhooks.models import WebhookEvent, WebhookRejection
from webmagic import webhook_signing as signing
from webmagic.webhook_signing import SignatureError, signed_headers

from .helpers import TEST_SECRET, WEBHOOK_URL, event_body, http_headers, post_event

pytestmark = pytest.mark.django_db

Reason = WebhookRejection.Reason
OTHER_SECRET = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
UNKNOWN = {"event_type": "something.new", "id": "xx_1", "live_mode": False}
LIVE = {"event_type": "something.new", "id": "xx_live", "live_mode": True}  # this test deployment is on test keys


def counts() -> dict[str, int]:
    totals: dict[str, int] = {}
    for reason, count in WebhookRejection.objects.values_list("reason", "count"):
        totals[reason] = totals.get(reason, 0) + count
    return totals


def post_raw(client, body: bytes, headers: dict):
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **http_headers(headers))


# --- Each reason, through the view ----------------------------------------------------------------

def test_a_wrong_secret_is_counted_as_bad_signature(client):
    response = post_event(client, UNKNOWN, secret=OTHER_SECRET)
    assert response.status_code == 401
    assert response.json()["reason"] == "bad_signature"
    assert counts() == {"bad_signature": 1}
    assert WebhookEvent.objects.count() == 0


@override_settings(RECURRENTE_WEBHOOK_SECRETS=[])
def test_no_secret_configured_is_counted_as_no_secret(client):
    assert post_event(client, UNKNOWN).status_code == 401
    assert counts() == {"no_secret": 1}


@override_settings(RECURRENTE_WEBHOOK_SECRETS=["whsec_***not-base64***"])
def test_an_unusable_configured_secret_is_counted_as_no_secret(client):
    body = event_body(UNKNOWN)
    headers = {"svix-id": "msg_x", "svix-timestamp": str(int(time.time())), "svix-signature": "v1,AAAA"}
    assert post_raw(client, body, headers).status_code == 401
    assert counts() == {"no_secret": 1}


@pytest.mark.parametrize(
    "drop, override",
    [
        pytest.param("svix-id", {}, id="no-id"),
        pytest.param("svix-timestamp", {}, id="no-timestamp"),
        pytest.param("svix-signature", {}, id="no-signature"),
        pytest.param(None, {"svix-timestamp": "12ab"}, id="malformed-timestamp"),
        pytest.param(None, {"svix-signature": "garbage"}, id="malformed-signature"),
        pytest.param(None, {"svix-id": "msg bad\u00e9"}, id="malformed-id"),
    ],
)
def test_missing_or_malformed_headers_are_counted_as_missing_headers(client, drop, override):
    body = event_body(UNKNOWN)
    headers = {**signed_headers(secret=TEST_SECRET, msg_id="msg_h", body=body), **override}
    headers.pop(drop, None)
    assert post_raw(client, body, headers).status_code == 400
    assert counts() == {"missing_headers": 1}


def test_no_headers_at_all_are_counted_as_missing_headers(client):
    assert post_raw(client, event_body(UNKNOWN), {}).status_code == 400
    assert counts() == {"missing_headers": 1}


@pytest.mark.parametrize("offset, reason", [(-301, "stale_timestamp"), (-86_400, "stale_timestamp"),
                                            (301, "future_timestamp"), (86_400, "future_timestamp")])
def test_timestamps_outside_the_window_are_counted_as_stale_or_future(client, offset, reason):
    response = post_event(client, UNKNOWN, timestamp=int(time.time()) + offset)
    assert response.status_code == 400
    assert "tolerance" in response.json()["error"]
    assert counts() == {reason: 1}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b'["event_type"]', id="not-an-object"),
        pytest.param(b"{}", id="no-event-type"),
        pytest.param(b'{"event_type": "a", "s": "\\u0000"}', id="unstorable"),
    ],
)
def test_signed_bodies_that_are_not_an_event_are_counted_as_malformed_body(client, body):
    assert post_event(client, body=body).status_code == 400
    assert counts() == {"malformed_body": 1}


def test_an_oversized_body_by_content_length_is_counted_before_reading(client, settings, monkeypatch):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    verified = []
    monkeypatch.setattr(services, "verify", lambda **kwargs: verified.append(1))
    response = post_event(client, {**UNKNOWN, "padding": "x" * 2000})
    assert response.status_code == 413
    assert not verified  # refused by the view on the declared length, never verified or parsed
    assert counts() == {"oversized_body": 1}


def test_an_oversized_body_with_a_lying_content_length_is_counted(rf, settings):
    from webhooks.views import recurrente

    settings.WEBHOOK_MAX_BODY_BYTES = 100
    body = event_body({**UNKNOWN, "padding": "x" * 500})
    request = rf.post(WEBHOOK_URL, data=body, content_type="application/json",
                      **http_headers(signed_headers(secret=TEST_SECRET, msg_id="msg_big", body=body)))
    request.META["CONTENT_LENGTH"] = "50"
    assert recurrente(request).status_code == 413
    assert counts() == {"oversized_body": 1}


def test_an_oversized_body_given_to_the_service_directly_is_counted(settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 10
    with pytest.raises(services.IntakeRejected) as refused:
        services.webhook_delivery_accept(headers={}, body=b"x" * 11)
    assert (refused.value.status, refused.value.reason) == (413, "oversized_body")
    assert counts() == {"oversized_body": 1}


def test_a_bad_content_length_is_counted_as_malformed_body(rf):
    from webhooks.views import recurrente

    request = rf.post(WEBHOOK_URL, data=b"{}", content_type="application/json")
    request.META["CONTENT_LENGTH"] = "12abc"
    assert recurrente(request).status_code == 400
    assert counts() == {"malformed_body": 1}


def test_an_accepted_delivery_is_not_counted(client):
    assert post_event(client, UNKNOWN).status_code == 200
    assert post_event(client, {"event_type": "subscription.create", "id": "su_1"}).status_code == 200  # mode unknown
    assert counts() == {}


def test_an_other_mode_event_is_stored_acknowledged_ignored_and_counted(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(client, LIVE)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.live_mode is True and event.status == WebhookEvent.Status.IGNORED  # staff can reprocess it later
    assert counts() == {"other_mode": 1}


def test_a_duplicate_other_mode_delivery_is_counted_once(client):
    first = post_event(client, LIVE, msg_id="msg_live_once")
    retry = post_event(client, LIVE, msg_id="msg_live_once")  # Svix keeps the svix-id on every retry
    assert (first.status_code, retry.status_code) == (200, 200) and retry.json()["duplicate"] is True
    assert counts() == {"other_mode": 1}


@override_settings(RECURRENTE_LIVE_MODE=True)
def test_a_test_mode_event_on_a_live_deployment_is_counted_as_other_mode(client):
    assert post_event(client, UNKNOWN).status_code == 200
    assert post_event(client, LIVE).status_code == 200
    assert counts() == {"other_mode": 1}


# --- What is stored ---------------------------------------------------------------------------

def test_nothing_of_the_refused_delivery_is_stored(client):
    marker = "MARKER-7f3a"
    body = event_body({**UNKNOWN, "customer": {"email": f"{marker}@example.com"}})
    headers = signed_headers(secret=OTHER_SECRET, msg_id=f"msg_{marker}", body=body)
    assert post_raw(client, body, {**headers, "x-extra": marker}).status_code == 401
    assert post_event(client, body=f'{{"event_type": "{marker}", "bad": NaN}}'.encode()).status_code == 400

    assert {f.name for f in WebhookRejection._meta.get_fields()} == {"id", "bucket", "reason", "count", "last_rejected_at"}
    rows = list(WebhookRejection.objects.values())
    assert {row["reason"] for row in rows} == {"bad_signature", "malformed_body"}
    assert marker not in repr(rows)
    assert WebhookEvent.objects.count() == 0


# --- The upsert -------------------------------------------------------------------------------

def test_rejections_in_one_minute_share_a_bucket_and_the_next_minute_starts_another():
    with freeze_time("2026-03-01 10:00:05"):
        services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE)
        services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE)
    with freeze_time("2026-03-01 10:00:59.5"):
        services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE)
        services.webhook_rejection_record(reason=Reason.STALE_TIMESTAMP)
    with freeze_time("2026-03-01 10:01:00"):
        services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE)

    rows = list(WebhookRejection.objects.order_by("bucket", "reason").values_list("bucket", "reason", "count", "last_rejected_at"))
    assert rows == [
        (datetime(2026, 3, 1, 10, 0, tzinfo=UTC), "bad_signature", 3, datetime(2026, 3, 1, 10, 0, 59, 500000, tzinfo=UTC)),
        (datetime(2026, 3, 1, 10, 0, tzinfo=UTC), "stale_timestamp", 1, datetime(2026, 3, 1, 10, 0, 59, 500000, tzinfo=UTC)),
        (datetime(2026, 3, 1, 10, 1, tzinfo=UTC), "bad_signature", 1, datetime(2026, 3, 1, 10, 1, tzinfo=UTC)),
    ]


def test_last_rejected_at_never_goes_back_in_time():
    later, earlier = datetime(2026, 3, 1, 10, 0, 40, tzinfo=UTC), datetime(2026, 3, 1, 10, 0, 20, tzinfo=UTC)
    services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE, now=later)
    services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE, now=earlier)  # a slower request finishing last
    row = WebhookRejection.objects.get()
    assert (row.count, row.last_rejected_at) == (2, later)


def test_recording_is_one_statement():
    services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE)
    with CaptureQueriesContext(connection) as captured:
        services.webhook_rejection_record(reason=Reason.BAD_SIGNATURE)
    statements = [q["sql"] for q in captured.captured_queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == 1 and "ON CONFLICT" in statements[0]


# --- Failures while recording -------------------------------------------------------------------

def test_a_database_error_while_recording_still_answers_the_4xx(client, monkeypatch, caplog):
    def broken(**kwargs):
        raise DatabaseError("database is down")

    monkeypatch.setattr(services, "_rejection_upsert", broken)
    assert post_event(client, UNKNOWN, secret=OTHER_SECRET).status_code == 401
    assert post_event(client, body=b"not json").status_code == 400
    assert "could not count a rejected webhook delivery (bad_signature)" in caplog.text


def test_an_unreachable_database_still_answers_the_4xx(client, settings, monkeypatch):
    def refused(*args, **kwargs):
        raise OperationalError("connection refused")

    settings.WEBHOOK_MAX_BODY_BYTES = 100
    monkeypatch.setattr(connection, "cursor", refused)  # every statement fails, savepoints included
    assert post_event(client, UNKNOWN, secret=OTHER_SECRET).status_code == 401
    assert post_event(client, {**UNKNOWN, "padding": "x" * 200}).status_code == 413  # refused by the view itself
    monkeypatch.undo()
    assert WebhookRejection.objects.count() == 0


def test_a_failed_recording_does_not_break_the_surrounding_transaction(monkeypatch):
    # Inside a transaction (tests, ATOMIC_REQUESTS) a failed statement must roll back to its own
    # savepoint, or every later query in the request would fail.
    services.webhook_rejection_record(reason="not-a-valid-reason-and-far-too-long-for-the-column" * 3)
    assert WebhookRejection.objects.count() in (0, 1)  # SQLite does not enforce max_length


# --- Reasons are one vocabulary -------------------------------------------------------------------

def test_every_signature_reason_is_a_rejection_reason_with_its_status():
    assert {signing.BAD_SIGNATURE, signing.NO_SECRET, signing.MISSING_HEADERS, signing.STALE_TIMESTAMP,
            signing.FUTURE_TIMESTAMP} <= set(Reason.values)
    assert SignatureError("x", reason=signing.BAD_SIGNATURE).status == 401
    assert SignatureError("x", reason=signing.NO_SECRET).status == 401
    assert SignatureError("x", reason=signing.MISSING_HEADERS).status == 400
    assert SignatureError("x", reason=signing.STALE_TIMESTAMP).status == 400


# --- Concurrency (PostgreSQL) ---------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_rejections_are_all_counted():
    threads_n, each = 8, 5
    barrier = threading.Barrier(threads_n)
    statuses, errors = [], []

    def sender():
        try:
            client = Client()
            barrier.wait()
            for _ in range(each):
                statuses.append(post_event(client, UNKNOWN, secret=OTHER_SECRET).status_code)
        except Exception as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert statuses == [401] * (threads_n * each)
    assert sum(WebhookRejection.objects.values_list("count", flat=True)) == threads_n * each
    assert set(WebhookRejection.objects.values_list("reason", flat=True)) == {"bad_signature"}
