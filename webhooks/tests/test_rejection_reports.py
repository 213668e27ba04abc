"""What others read from the rejection counts: selectors, the two alert rules at their
boundaries, the read-only admin, and pruning old buckets."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from freezegun import freeze_time

from webhooks import rejections, selectors, services
from webhooks.models import WebhookEvent, WebhookRejection
from webhooks.tasks import prune_webhook_rejections

pytestmark = pytest.mark.django_db

Reason = WebhookRejection.Reason
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REJECTIONS = "/admin/webhooks/webhookrejection/"


def reject(reason=Reason.BAD_SIGNATURE, *, at=NOW, times=1):
    for _ in range(times):
        services.webhook_rejection_record(reason=reason, now=at)


def stored_event(*, live_mode, received_at) -> WebhookEvent:
    payload = {"event_type": "something.new", "id": "xx_1", "live_mode": live_mode}
    event = WebhookEvent.objects.create(
        delivery_id=f"msg_{uuid.uuid4().hex}", event_type="something.new", object_id="xx_1", live_mode=live_mode,
        raw_body=json.dumps(payload), payload=payload,
    )
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=received_at)
    return event


# --- Selectors -------------------------------------------------------------------------------------

def test_rejections_by_reason_sums_buckets_since_a_time_in_one_query(django_assert_num_queries):
    reject(Reason.BAD_SIGNATURE, at=NOW - timedelta(minutes=1), times=2)
    reject(Reason.BAD_SIGNATURE, at=NOW - timedelta(minutes=5))
    reject(Reason.STALE_TIMESTAMP, at=NOW - timedelta(minutes=5))
    reject(Reason.OTHER_MODE, at=NOW - timedelta(minutes=30))  # before `since`
    with django_assert_num_queries(1):
        by_reason = selectors.rejections_by_reason(since=NOW - timedelta(minutes=10))
    assert by_reason == {"bad_signature": 3, "stale_timestamp": 1}
    assert selectors.rejections_total(since=NOW - timedelta(minutes=10)) == 4
    assert selectors.rejections_total(since=NOW - timedelta(hours=1)) == 5


def test_no_rejections_read_as_empty_and_zero():
    assert selectors.rejections_by_reason(since=NOW) == {}
    assert selectors.rejections_total(since=NOW) == 0


def test_last_accepted_delivery_is_the_newest_event_for_this_deployment():
    assert selectors.last_accepted_delivery() is None
    older = stored_event(live_mode=False, received_at=NOW - timedelta(hours=2))
    stored_event(live_mode=True, received_at=NOW)  # other mode: stored, but not for this deployment
    assert selectors.last_accepted_delivery() == older
    unknown = stored_event(live_mode=None, received_at=NOW - timedelta(minutes=5))  # subscription events say nothing
    assert selectors.last_accepted_delivery() == unknown
    with override_settings(RECURRENTE_LIVE_MODE=True):
        assert selectors.last_accepted_delivery().live_mode is True


# --- Alert: 3 rejections in 15 minutes ------------------------------------------------------------

def test_two_rejections_in_15_minutes_do_not_alert():
    reject(times=2, at=NOW - timedelta(minutes=15))  # the oldest bucket still inside the window
    reject(at=NOW - timedelta(minutes=16))  # just outside
    assert rejections.alert_rejected_deliveries(now=NOW) is None


def test_three_rejections_in_15_minutes_alert_with_what_to_do():
    reject(Reason.BAD_SIGNATURE, times=2, at=NOW - timedelta(minutes=15))
    reject(Reason.FUTURE_TIMESTAMP, at=NOW)
    alert = rejections.alert_rejected_deliveries(now=NOW)
    assert alert is not None and alert.kind == "rejected_deliveries"
    assert "3 Recurrente webhook deliveries refused" in alert.subject
    assert "2 × bad_signature (Bad signature: wrong or rotated RECURRENTE_WEBHOOK_SECRETS)" in alert.body
    assert "1 × future_timestamp" in alert.body
    for advice in ("RECURRENTE_WEBHOOK_SECRETS", "Recurrente's dashboard", "RECURRENTE_LIVE_MODE", "sk_live_",
                   "clock", "28 hours", "5 days"):
        assert advice in alert.body


def test_what_any_scanner_sends_is_counted_but_never_pages_staff():
    """No Svix headers, or a huge body: any script on the internet can send that, so neither rule
    counts it (it is still counted and shown in admin and on the health page)."""
    reject(Reason.MISSING_HEADERS, times=20, at=NOW)
    reject(Reason.OVERSIZED_BODY, times=5, at=NOW)
    assert rejections.alert_rejected_deliveries(now=NOW) is None
    assert rejections.alert_rejections_without_accepted(now=NOW) is None
    assert selectors.rejections_total(since=NOW - timedelta(minutes=1)) == 25
    reject(Reason.BAD_SIGNATURE, at=NOW)  # one that our configuration explains does
    assert rejections.alert_rejections_without_accepted(now=NOW) is not None


# --- Alert: rejections and nothing accepted in an hour -----------------------------------------------

def test_rejections_with_no_accepted_delivery_in_the_hour_alert():
    reject(Reason.OTHER_MODE, at=NOW - timedelta(minutes=60))
    alert = rejections.alert_rejections_without_accepted(now=NOW)
    assert alert is not None and alert.kind == "rejections_without_accepted"
    assert "Last accepted delivery: never" in alert.body
    assert "RECURRENTE_LIVE_MODE" in alert.body and "28 hours" in alert.body


def test_an_accepted_delivery_older_than_the_hour_does_not_silence_the_alert():
    reject(at=NOW - timedelta(minutes=10))
    old = stored_event(live_mode=False, received_at=NOW - timedelta(minutes=61))
    stored_event(live_mode=True, received_at=NOW - timedelta(minutes=5))  # other mode is no proof
    alert = rejections.alert_rejections_without_accepted(now=NOW)
    assert alert is not None and f"(event {old.pk})" in alert.body


def test_rejections_with_an_accepted_delivery_in_the_hour_do_not_alert():
    reject(at=NOW - timedelta(minutes=10))
    stored_event(live_mode=False, received_at=NOW - timedelta(minutes=60))
    assert rejections.alert_rejections_without_accepted(now=NOW) is None


def test_no_rejections_in_the_hour_do_not_alert_even_without_deliveries():
    reject(at=NOW - timedelta(minutes=61))
    assert rejections.alert_rejections_without_accepted(now=NOW) is None


# --- Admin -------------------------------------------------------------------------------------------

def test_the_admin_lists_rejections_read_only(staff_client):
    reject(Reason.BAD_SIGNATURE, times=4)
    reject(Reason.OTHER_MODE)
    response = staff_client.get(REJECTIONS)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Bad signature: wrong or rotated RECURRENTE_WEBHOOK_SECRETS" in body
    assert f'href="{REJECTIONS}add/"' not in body
    assert staff_client.get(REJECTIONS, {"reason": "other_mode"}).status_code == 200
    assert staff_client.get(REJECTIONS, {"bucket__year": "2026"}).status_code == 200

    row = WebhookRejection.objects.get(reason=Reason.BAD_SIGNATURE)
    assert staff_client.get(f"{REJECTIONS}add/").status_code == 403
    assert staff_client.post(f"{REJECTIONS}{row.pk}/change/", {"count": "0"}).status_code == 403
    assert staff_client.post(f"{REJECTIONS}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert WebhookRejection.objects.get(pk=row.pk).count == 4


def test_the_admin_list_runs_a_fixed_number_of_queries(staff_client):
    from webmagic.tests.admin_queries import assert_constant_queries

    def make_rows(n):
        start = WebhookRejection.objects.count()
        for i in range(n):
            reject(at=NOW - timedelta(minutes=start + i))

    assert_constant_queries(staff_client, REJECTIONS, make_rows)


# --- Pruning -----------------------------------------------------------------------------------------

def test_prune_deletes_buckets_older_than_the_cutoff():
    reject(at=NOW - timedelta(days=31))
    reject(at=NOW - timedelta(days=30))
    reject(at=NOW)
    assert services.webhook_rejections_prune(older_than=NOW - timedelta(days=30)) == 1
    assert WebhookRejection.objects.count() == 2


def test_the_daily_task_keeps_30_days(beat_schedule):
    reject(at=NOW - timedelta(days=30, minutes=1))
    reject(at=NOW - timedelta(days=29))
    with freeze_time(NOW):
        assert prune_webhook_rejections() == 1
    assert WebhookRejection.objects.count() == 1
    task = beat_schedule.get(task="webhooks.tasks.prune_webhook_rejections")
    assert task.enabled and task.crontab is not None and task.crontab.hour == "3"
