"""Brevo tracking webhooks (through anymail) update the email log, forward only."""

import base64
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from checkout.selectors import funnel_metrics
from webmagic.models import EmailLog, EmailSuppression
from webmagic.tracking import email_tracking_record

pytestmark = pytest.mark.django_db

URL = "/anymail/brevo/tracking/"
SECRET = "brevo:s3cret-tracking-pass"
MESSAGE_ID = "<202603101200.12345678901@smtp-relay.mailin.fr>"


def brevo_event(event, *, message_id=MESSAGE_ID, ts_epoch=1773144000000, **extra):
    """The shape Brevo posts for transactional events (developers.brevo.com, transactional webhooks)."""
    return {
        "event": event, "email": "maria@example.com", "id": 123456, "date": "2026-03-10 13:00:00",
        "ts": 1773144000, "message-id": message_id, "ts_event": 1773144000, "subject": "Your site is waiting",
        "tag": "", "sending_ip": "185.41.28.109", "ts_epoch": ts_epoch, **extra,
    }


def auth(secret=SECRET):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def post(client, payload, **headers):
    return client.post(URL, data=json.dumps(payload), content_type="application/json", **headers)


@pytest.fixture
def sent_reminder():
    return EmailLog.objects.create(
        kind=EmailLog.Kind.RECOVERY_REMINDER, to_email="maria@example.com", status=EmailLog.Status.SENT,
        provider_message_id=MESSAGE_ID, sent_at=datetime(2026, 3, 10, 11, 59, tzinfo=UTC),
    )


@override_settings(ANYMAIL={"WEBHOOK_SECRET": SECRET})
def test_brevo_events_posted_to_the_endpoint_move_the_log_forward(client, sent_reminder):
    assert post(client, brevo_event("delivered"), **auth()).status_code == 200
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.DELIVERED
    assert sent_reminder.delivered_at == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # ts_epoch, UTC

    assert post(client, brevo_event("unique_opened", ts_epoch=1773144060000), **auth()).status_code == 200
    assert post(client, brevo_event("click", ts_epoch=1773144120000, link="http://testserver/x"), **auth()).status_code == 200
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.CLICKED
    assert sent_reminder.opened_at == datetime(2026, 3, 10, 12, 1, tzinfo=UTC)
    assert sent_reminder.clicked_at == datetime(2026, 3, 10, 12, 2, tzinfo=UTC)

    # A late "delivered" or a second open never moves it back, nor moves the first-open time.
    post(client, brevo_event("delivered", ts_epoch=1773144500000), **auth())
    post(client, brevo_event("opened", ts_epoch=1773144600000), **auth())
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.CLICKED
    assert sent_reminder.opened_at == datetime(2026, 3, 10, 12, 1, tzinfo=UTC)


@override_settings(ANYMAIL={"WEBHOOK_SECRET": SECRET})
def test_funnel_shows_reminder_open_and_click_rates_from_tracking(client, sent_reminder):
    other = EmailLog.objects.create(
        kind=EmailLog.Kind.RECOVERY_REMINDER, to_email="b@example.com", status=EmailLog.Status.SENT,
        provider_message_id="<other@smtp-relay.mailin.fr>",
    )
    post(client, brevo_event("unique_opened"), **auth())
    post(client, brevo_event("delivered", message_id=other.provider_message_id), **auth())
    start = datetime(2000, 1, 1, tzinfo=UTC)
    metrics = funnel_metrics(start=start, end=datetime(2100, 1, 1, tzinfo=UTC))
    assert (metrics["reminder_open_rate"], metrics["reminder_click_rate"]) == (50.0, 0.0)


@override_settings(ANYMAIL={"WEBHOOK_SECRET": SECRET})
def test_the_endpoint_requires_the_basic_auth_secret(client, sent_reminder):
    assert post(client, brevo_event("delivered")).status_code in (400, 401, 403)
    assert post(client, brevo_event("delivered"), **auth("brevo:wrong")).status_code in (400, 401, 403)
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.SENT


@override_settings(ANYMAIL={"WEBHOOK_SECRET": ""})
def test_without_a_secret_the_endpoint_is_closed(client, sent_reminder):
    """anymail alone would accept unauthenticated posts when no secret is set; ours refuses."""
    assert post(client, brevo_event("hard_bounce")).status_code == 404
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.SENT


@override_settings(ANYMAIL={"WEBHOOK_SECRET": SECRET})
def test_bounce_is_final_and_unknown_message_ids_are_ignored(client, sent_reminder):
    post(client, brevo_event("hard_bounce", reason="550 no such user"), **auth())
    post(client, brevo_event("unique_opened"), **auth())
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.BOUNCED
    assert sent_reminder.bounced_at is not None
    assert sent_reminder.opened_at is not None  # the timestamp is still recorded, the status stays final
    assert post(client, brevo_event("delivered", message_id="<unknown@x>"), **auth()).status_code == 200


def test_a_spam_complaint_is_final_and_stops_reminders(sent_reminder):
    assert email_tracking_record(message_id=MESSAGE_ID, event_type="complained")
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.COMPLAINED
    assert EmailSuppression.objects.get(email="maria@example.com").source == EmailSuppression.Source.COMPLAINT
    email_tracking_record(message_id=MESSAGE_ID, event_type="clicked")
    sent_reminder.refresh_from_db()
    assert sent_reminder.status == EmailLog.Status.COMPLAINED


@override_settings(ANYMAIL={"WEBHOOK_SECRET": SECRET})
def test_a_complaint_about_a_scrubbed_reminder_suppresses_the_address_brevo_names(client, sent_reminder):
    EmailLog.objects.filter(pk=sent_reminder.pk).update(to_email="")  # the 90-day cleanup removed it
    assert post(client, brevo_event("spam", email="maria@example.com"), **auth()).status_code == 200
    assert EmailSuppression.objects.get().email == "maria@example.com"


def test_a_complaint_naming_no_address_records_no_empty_suppression(sent_reminder):
    EmailLog.objects.filter(pk=sent_reminder.pk).update(to_email="")
    assert email_tracking_record(message_id=MESSAGE_ID, event_type="complained")
    assert not EmailSuppression.objects.exists()


def test_blocked_marks_a_sent_email_failed_but_not_one_already_delivered(sent_reminder):
    assert email_tracking_record(message_id=MESSAGE_ID, event_type="rejected", detail="blocked")
    sent_reminder.refresh_from_db()
    assert (sent_reminder.status, sent_reminder.error) == (EmailLog.Status.FAILED, "Brevo: blocked")
    delivered = EmailLog.objects.create(
        kind=EmailLog.Kind.RECEIPT, to_email="x@example.com", status=EmailLog.Status.DELIVERED, provider_message_id="<d@x>",
    )
    assert not email_tracking_record(message_id="<d@x>", event_type="rejected")
    delivered.refresh_from_db()
    assert delivered.status == EmailLog.Status.DELIVERED


def test_production_with_brevo_but_no_webhook_secret_fails_the_system_check(settings):
    settings.PRODUCTION = True
    settings.BREVO_API_KEY = "xkeysib-test"
    settings.ANYMAIL = {"BREVO_API_KEY": "xkeysib-test", "WEBHOOK_SECRET": ""}
    with pytest.raises(SystemCheckError, match="webmagic.E003"):
        call_command("check", tag=["security"])
    settings.ANYMAIL = {"BREVO_API_KEY": "xkeysib-test", "WEBHOOK_SECRET": SECRET}
    settings.RECURRENTE_SECRET_KEY = "sk_live_x"
    call_command("check", tag=["security"])
