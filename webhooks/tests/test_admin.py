"""Webhook events admin: a readable, escaped payload (no inline style), the error, reprocess."""

import pytest
from django.contrib.messages import get_messages

from webhooks.models import WebhookEvent
from webmagic.tests.admin_queries import assert_constant_queries

pytestmark = pytest.mark.django_db

EVENTS = "/admin/webhooks/webhookevent/"


def event(n=0, **kwargs):
    defaults = {
        "delivery_id": f"msg_{n}_{WebhookEvent.objects.count()}", "event_type": "payment_intent.succeeded",
        "object_id": "pa_ttr2w9xk", "raw_body": "{}", "payload": {"id": "pa_ttr2w9xk", "amount_in_cents": 49500},
    }
    return WebhookEvent.objects.create(**{**defaults, **kwargs})


def test_change_page_shows_the_payload_pretty_and_escaped_without_inline_styles(staff_client):
    hostile = event(payload={"customer": {"full_name": "<script>alert(1)</script>"}, "amount_in_cents": 49500},
                    status=WebhookEvent.Status.FAILED, error="KeyError: 'checkout'")
    response = staff_client.get(f"{EVENTS}{hostile.pk}/change/")
    body = response.content.decode()
    assert '<pre class="webhook-payload">' in body
    assert '&quot;full_name&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;' in body
    assert "<script>alert(1)" not in body
    assert 'style="' not in body and "style='" not in body  # the CSP forbids inline styles
    assert "css/admin-staff" in body and "KeyError: &#x27;checkout&#x27;" in body
    assert "style-src 'self'" in response["Content-Security-Policy"]


def test_list_shows_the_first_line_of_the_error(staff_client):
    event(status=WebhookEvent.Status.FAILED, error="CheckoutSessionNotFound: no session\n  file.py:1 in f")
    body = staff_client.get(EVENTS + "?status__exact=failed").content.decode()
    assert "CheckoutSessionNotFound: no session" in body and "file.py:1" not in body


def test_reprocess_action_requeues_failed_events_and_reports_the_rest(staff_client, django_capture_on_commit_callbacks):
    failed = event(1, status=WebhookEvent.Status.FAILED, error="boom", live_mode=True)  # will be ignored on reprocess
    done = event(2, status=WebhookEvent.Status.PROCESSED)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(EVENTS, {"action": "reprocess", "_selected_action": [failed.pk, done.pk]}, follow=True)
    notes = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert ("success", "Queued 1 event(s) for processing.") in notes
    assert any(level == "warning" and "Skipped 1" in text for level, text in notes)
    failed.refresh_from_db()
    assert failed.status == WebhookEvent.Status.IGNORED  # processed again (live_mode does not match this test deployment)


def test_no_add_permission(staff_client):
    assert staff_client.get(EVENTS + "add/").status_code == 403


def test_changelist_runs_a_fixed_number_of_queries(staff_client):
    assert_constant_queries(staff_client, EVENTS, lambda n: [event(i) for i in range(n)])
