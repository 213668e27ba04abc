"""Cancelling hosting from the portal (DESIGN §6): confirmation, DELETE /subscriptions/{id}, the
site stays live until the paid period ends, then the periodic task suspends it once. A DELETE
without a clear answer is checked by reading the subscription back: recorded if it shows the
cancellation, otherwise the owner hears "could not confirm" (never "nothing changed") and staff
are alerted."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
import responses as responses_lib
from django.contrib.messages import get_messages
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from checkout.models import Subscription
from checkout.services.hosting import CONFIRM_TIMEOUT, hosting_cancel
from checkout.tasks import suspend_ended_subscriptions
from checkout.tests.factories import PaymentFactory, SubscriptionFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks.tests.helpers import post_event, subscription_event
from webmagic.models import EmailLog

from .conftest import API
from .recurrente_faults import maybe_acted, never_sent

pytestmark = pytest.mark.django_db

SU = "su_9xk2p7qv"
PERIOD_END = datetime(2026, 12, 21, 15, 2, 17, 636000, tzinfo=UTC)  # api/get_subscription.response.json


@pytest.fixture
def owner(db):
    return CustomerFactory(email="maria.lopez@example.com", full_name="María López")


@pytest.fixture
def live_site(owner):
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros", status=Site.Status.ACTIVE, owner=owner)
    subscription = SubscriptionFactory(
        site=site, user=owner, recurrente_subscription_id=SU, status=Subscription.Status.ACTIVE,
        amount=Decimal("95.00"), current_period_end=PERIOD_END - timedelta(days=30),
        last_event_at=datetime(2026, 11, 21, 15, 2, 18, tzinfo=UTC),
    )
    site.subscription = subscription
    return site


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def api_ok(recurrente_api):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json=recurrente_fixture("api/cancel_subscription.response.json"))
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=recurrente_fixture("api/get_subscription.response.json"))
    return recurrente_api


def cancel_url(site):
    return reverse("hosting:cancel", kwargs={"slug": site.slug})


def deletes(mock):
    return [call for call in mock.calls if call.request.method == "DELETE"]


def flash(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_get_asks_for_confirmation_and_changes_nothing(owner_client, live_site, api_ok):
    response = owner_client.get(cancel_url(live_site))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Cancel hosting?" in body and "Yes, cancel hosting" in body and 'method="post"' in body
    assert "csrfmiddlewaretoken" in body and "/portal/sites/la-plumbing-pros/" in body
    assert "style=" not in body and "<script>" not in body  # strict CSP: no inline styles or scripts
    assert deletes(api_ok) == []
    assert Subscription.objects.get().cancel_requested_at is None


def test_confirming_cancels_at_recurrente_and_keeps_the_site_live_until_the_period_ends(
    owner_client, live_site, api_ok, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(cancel_url(live_site))

    assert response.status_code == 303 and response["Location"] == "/portal/sites/la-plumbing-pros/"
    assert "stays live until December 21, 2026" in flash(response)[0]
    [call] = deletes(api_ok)
    assert call.request.url == f"{API}/subscriptions/{SU}"
    subscription = Subscription.objects.get()
    assert subscription.cancel_requested_at is not None
    assert subscription.status == Subscription.Status.ACTIVE  # Recurrente's state until the period ends
    assert subscription.current_period_end == PERIOD_END  # refreshed from the API
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE
    [notice] = EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED)
    assert notice.context["reason"] == "cancel_scheduled" and notice.context["live_until"] == "December 21, 2026"
    assert "stays live until December 21, 2026" in mail.outbox[-1].body


def test_the_later_cancel_webhook_changes_nothing_more(owner_client, client, live_site, api_ok, django_capture_on_commit_callbacks):
    owner_client.post(cancel_url(live_site))
    client.logout()
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, subscription_event("subscription.cancel.json")).status_code == 200
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.CANCELLED
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED).count() == 1  # the one cancellation notice


def test_the_cancel_webhook_arriving_first_is_fine_too(owner_client, client, live_site, api_ok, django_capture_on_commit_callbacks):
    Subscription.objects.update(current_period_end=PERIOD_END)
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, subscription_event("subscription.cancel.json"))
    owner_client.force_login(live_site.owner)
    response = owner_client.post(cancel_url(live_site))
    assert response.status_code == 303
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED).count() == 1


def test_after_the_period_the_task_suspends_the_site_once_and_emails_once(owner_client, live_site, api_ok):
    owner_client.post(cancel_url(live_site))
    with freeze_time(PERIOD_END - timedelta(minutes=1)):
        suspend_ended_subscriptions.delay()
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE

    with freeze_time(PERIOD_END + timedelta(minutes=1)):
        suspend_ended_subscriptions.delay()
        suspend_ended_subscriptions.delay()
    site = Site.objects.get(pk=live_site.pk)
    assert site.status == Site.Status.SUSPENDED and site.suspended_at is not None
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.CANCELLED and subscription.cancelled_at is not None
    logs = EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED).order_by("created_at")
    assert [log.context["reason"] for log in logs] == ["cancel_scheduled", "ended"]


def test_the_task_leaves_a_site_that_a_new_subscription_pays_for(owner, live_site):
    Subscription.objects.update(cancel_requested_at=timezone.now(), current_period_end=timezone.now() + timedelta(days=1))
    SubscriptionFactory(site=live_site, user=owner, status=Subscription.Status.ACTIVE)
    with freeze_time(timezone.now() + timedelta(days=2)):
        suspend_ended_subscriptions.delay()
    assert Subscription.objects.get(recurrente_subscription_id=SU).status == Subscription.Status.CANCELLED
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE


def test_recurrente_failing_shows_an_error_and_changes_nothing(owner_client, live_site, recurrente_api):
    # Never sent: certainly nothing changed. (A 502 may have cancelled: "A cancel without a clear answer" below.)
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", **NOTHING_SENT["connection refused"])
    response = owner_client.post(cancel_url(live_site))
    assert response.status_code == 503
    assert "couldn't cancel your hosting" in response.content.decode()
    subscription = Subscription.objects.get()
    assert subscription.cancel_requested_at is None and subscription.status == Subscription.Status.ACTIVE
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE
    assert EmailLog.objects.count() == 0


def test_recurrente_refusing_is_an_error_too(owner_client, live_site, recurrente_api):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json={"message": "No"}, status=422)
    assert owner_client.post(cancel_url(live_site)).status_code == 503
    assert Subscription.objects.get().cancel_requested_at is None


def test_a_second_confirmation_does_not_call_recurrente_again(owner_client, live_site, api_ok):
    owner_client.post(cancel_url(live_site))
    response = owner_client.post(cancel_url(live_site))
    assert response.status_code == 303 and len(deletes(api_ok)) == 1


def test_without_a_subscription_the_page_sends_the_owner_back(owner_client, owner, api_ok):
    site = SiteFactory(status=Site.Status.OWNED, owner=owner)
    response = owner_client.get(cancel_url(site))
    assert response.status_code == 303 and response["Location"] == f"/portal/sites/{site.slug}/"
    assert "no active hosting subscription" in flash(response)[0]
    response = owner_client.post(cancel_url(site))
    assert response.status_code == 303 and deletes(api_ok) == []


def test_someone_else_gets_404_and_nothing_is_cancelled(client, live_site, api_ok):
    client.force_login(CustomerFactory())
    assert client.get(cancel_url(live_site)).status_code == 404
    assert client.post(cancel_url(live_site)).status_code == 404
    assert deletes(api_ok) == []


def test_anonymous_visitors_are_sent_to_log_in(client, live_site, settings):
    settings.LOGIN_URL = "/portal/login/"
    assert client.get(cancel_url(live_site))["Location"].startswith("/portal/login/?next=")


def test_an_unverified_email_is_sent_to_the_portal(client, owner, live_site, api_ok):
    owner.email_verified = False
    owner.save()
    client.force_login(owner)
    assert client.post(cancel_url(live_site))["Location"] == "/portal/"
    assert deletes(api_ok) == []


def test_a_period_already_over_suspends_at_once(owner_client, live_site, recurrente_api):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json={})
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", status=503)
    Subscription.objects.update(current_period_end=timezone.now() - timedelta(days=1))
    response = owner_client.post(cancel_url(live_site))
    assert response.status_code == 303
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.SUSPENDED
    assert Subscription.objects.get().status == Subscription.Status.CANCELLED


def test_an_unknown_period_is_one_month_after_the_last_payment(owner, live_site, recurrente_api):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json={})
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", status=503)
    Subscription.objects.update(current_period_end=None)
    paid = timezone.now() - timedelta(days=3)
    PaymentFactory(site=live_site, subscription=live_site.subscription, kind="subscription", amount=Decimal("95.00"), paid_at=paid)
    subscription = hosting_cancel(site_id=live_site.pk, user=owner)
    assert paid + timedelta(days=27) < subscription.current_period_end < paid + timedelta(days=32)
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE


def test_a_paused_subscription_can_be_cancelled(owner_client, live_site, api_ok):
    Subscription.objects.update(status=Subscription.Status.PAUSED)
    Site.objects.filter(pk=live_site.pk).update(status=Site.Status.SUSPENDED)
    assert "will not resume" in owner_client.get(cancel_url(live_site)).content.decode()
    response = owner_client.post(cancel_url(live_site))
    assert response.status_code == 303 and len(deletes(api_ok)) == 1
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.SUSPENDED
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED).count() == 0


# --- A cancel without a clear answer: ask Recurrente before telling the owner anything -----------

# The DELETE certainly changed nothing: never sent, or turned away unread. Nothing is asked after.
NOTHING_SENT = {
    **never_sent(f"/api/subscriptions/{SU}"),
    "401": {"status": 401, "json": {"message": "Invalid keys"}},
    "429": {"status": 429, "json": {"message": "Too many requests"}},
}

# The DELETE may have cancelled (or, for a 404, the subscription may be gone because it was).
MAYBE_CANCELLED = {
    **maybe_acted("https://elsewhere.example/subscriptions"),
    "404": {"status": 404, "json": {"message": "Not found"}},
}

GET_FAILS = {
    "read timeout": maybe_acted()["read timeout"],
    "503": maybe_acted()["503"],
    "connection refused": never_sent(f"/api/subscriptions/{SU}")["connection refused"],
    "404": {"status": 404, "json": {"message": "Not found"}},
}

COULD_NOT_CONFIRM = "We couldn't confirm whether your hosting was cancelled"


def subscription_reading(status: str) -> dict:
    body = recurrente_fixture("api/get_subscription.response.json")
    body["status"] = status
    return body


def gets(mock):
    return [call for call in mock.calls if call.request.method == "GET"]


def staff_alerts():
    return list(EmailLog.objects.filter(kind=EmailLog.Kind.STAFF_ALERT))


def owner_notices():
    return list(EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED))


def post_cancel(owner_client, live_site, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return owner_client.post(cancel_url(live_site))


@pytest.mark.parametrize("fault", NOTHING_SENT)
def test_a_cancel_that_never_reached_recurrente_says_nothing_changed(
        fault, owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", **NOTHING_SENT[fault])
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=subscription_reading("cancelled"))

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert response.status_code == 503
    body = response.content.decode()
    assert "Nothing has changed" in body and COULD_NOT_CONFIRM not in body
    assert gets(recurrente_api) == []  # nothing to find out
    assert Subscription.objects.get().cancel_requested_at is None
    assert EmailLog.objects.count() == 0  # no owner notice, no staff alert


def test_a_refused_cancel_of_a_subscription_recurrente_shows_active_says_nothing_changed(
        owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json={"message": "No se pudo cancelar"}, status=422)
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=subscription_reading("active"))

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert response.status_code == 503 and "Nothing has changed" in response.content.decode()
    assert Subscription.objects.get().cancel_requested_at is None
    assert EmailLog.objects.count() == 0


@pytest.mark.parametrize("fault", MAYBE_CANCELLED)
def test_an_unclear_answer_then_recurrente_reading_cancelled_is_recorded_as_a_cancellation(
        fault, owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", **MAYBE_CANCELLED[fault])
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=subscription_reading("cancelled"))

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    # Exactly what a DELETE answered OK does: the success message, the record, one notice.
    assert response.status_code == 303 and response["Location"] == "/portal/sites/la-plumbing-pros/"
    assert flash(response) == [
        "Hosting is cancelled. LA Plumbing Pros stays live until December 21, 2026, and you won't be charged again."
    ]
    subscription = Subscription.objects.get()
    assert subscription.cancel_requested_at is not None
    assert subscription.current_period_end == PERIOD_END  # from the read-back, not asked a third time
    assert Site.objects.get(pk=live_site.pk).status == Site.Status.ACTIVE
    [notice] = owner_notices()
    assert notice.context["reason"] == "cancel_scheduled" and notice.context["live_until"] == "December 21, 2026"
    assert staff_alerts() == []
    [read_back] = gets(recurrente_api)
    assert read_back.request.req_kwargs["timeout"] == CONFIRM_TIMEOUT  # short: the owner already waited


@pytest.mark.parametrize("answer", [{"status": 422, "json": {"message": "La suscripción ya fue cancelada"}},
                                    {"status": 404, "json": {"message": "Not found"}}])
def test_a_second_delete_of_a_subscription_already_cancelled_is_a_success(
        answer, owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    # However Recurrente answers a DELETE of a cancelled subscription, reading it says what is true.
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", **answer)
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=subscription_reading("cancelled"))

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert response.status_code == 303 and flash(response)[0].startswith("Hosting is cancelled.")
    assert Subscription.objects.get().cancel_requested_at is not None
    assert len(owner_notices()) == 1 and staff_alerts() == []


def test_a_read_back_about_another_subscription_is_not_taken_as_a_cancellation(
        owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", status=502)
    elsewhere = subscription_reading("cancelled") | {"id": "su_other0001"}
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=elsewhere)

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert response.status_code == 503 and COULD_NOT_CONFIRM in response.content.decode()
    assert Subscription.objects.get().cancel_requested_at is None


@pytest.mark.parametrize("fault", ["502", "read timeout", "dropped after sending", "redirect"])
def test_an_unclear_answer_with_recurrente_still_reading_active_is_not_confirmed_and_staff_are_told(
        fault, owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", **MAYBE_CANCELLED[fault])
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=subscription_reading("active"))
    Subscription.objects.update(last_reconciled_at=timezone.now())

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert response.status_code == 503
    body = response.content.decode()
    assert COULD_NOT_CONFIRM in body and "try again in a few minutes" in body and "never charges you" in body
    assert "Nothing has changed" not in body and "still active" not in body
    assert 'method="post"' in body  # the way to try again is on the page
    subscription = Subscription.objects.get()
    assert subscription.cancel_requested_at is None and subscription.status == Subscription.Status.ACTIVE
    assert subscription.last_reconciled_at is None  # read again on the reconciler's next pass
    assert owner_notices() == []
    [alert] = staff_alerts()
    assert alert.to_email == "alerts@webmagic.test"
    assert SU in alert.subject and "not confirmed" in alert.subject
    text = alert.context["body"]
    assert SU in text and "la-plumbing-pros" in text and "maria.lopez@example.com" in text
    assert "showed it active" in text and "Recurrente's dashboard" in text
    assert "reconciler" in text and "at least daily" in text
    assert any(SU in m.subject for m in mail.outbox)  # delivered to staff


@pytest.mark.parametrize("get_fault", GET_FAILS)
def test_an_unclear_answer_with_the_read_back_failing_too_is_not_confirmed(
        get_fault, owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", status=503, json={"message": "unavailable"})
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", **GET_FAILS[get_fault])

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert response.status_code == 503
    body = response.content.decode()
    assert COULD_NOT_CONFIRM in body and "Nothing has changed" not in body
    assert Subscription.objects.get().cancel_requested_at is None
    assert owner_notices() == []
    [alert] = staff_alerts()
    assert SU in alert.context["body"] and "reading it back right after failed too" in alert.context["body"]


def test_after_an_unconfirmed_cancel_a_retry_that_succeeds_cancels_once(
        owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    # responses answers in the order registered: 502 then OK to DELETE; active then the fixture to GET.
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", status=502)
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", json=recurrente_fixture("api/cancel_subscription.response.json"))
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=subscription_reading("active"))
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=recurrente_fixture("api/get_subscription.response.json"))

    first = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)
    assert first.status_code == 503 and COULD_NOT_CONFIRM in first.content.decode()
    assert Subscription.objects.get().cancel_requested_at is None

    again = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert again.status_code == 303 and "stays live until December 21, 2026" in flash(again)[0]
    assert len(deletes(recurrente_api)) == 2
    subscription = Subscription.objects.get()
    assert subscription.cancel_requested_at is not None and subscription.current_period_end == PERIOD_END
    assert len(owner_notices()) == 1 and len(staff_alerts()) == 1
    assert post_cancel(owner_client, live_site, django_capture_on_commit_callbacks).status_code == 303  # a third click
    assert len(deletes(recurrente_api)) == 2 and len(owner_notices()) == 1


def test_an_unclear_answer_while_another_click_got_recurrentes_ok_shows_the_success(
        owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", status=502)

    def meanwhile_the_other_click_records_it(request):
        Subscription.objects.update(cancel_requested_at=timezone.now(), current_period_end=PERIOD_END)
        return 200, {}, json.dumps(subscription_reading("active"))

    recurrente_api.add_callback(responses_lib.GET, f"{API}/subscriptions/{SU}", callback=meanwhile_the_other_click_records_it)

    response = post_cancel(owner_client, live_site, django_capture_on_commit_callbacks)

    assert response.status_code == 303 and flash(response)[0].startswith("Hosting is cancelled.")
    assert staff_alerts() == []


def test_retrying_into_the_same_unclear_answer_alerts_staff_once_a_day(
        owner_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", status=502)
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", status=503)
    for _ in range(3):
        assert COULD_NOT_CONFIRM in post_cancel(owner_client, live_site, django_capture_on_commit_callbacks).content.decode()
    assert len(deletes(recurrente_api)) == 3 and len(staff_alerts()) == 1


def test_staff_cancelling_in_admin_are_told_it_is_not_confirmed_not_that_nothing_changed(
        staff_client, live_site, recurrente_api, django_capture_on_commit_callbacks):
    recurrente_api.add(responses_lib.DELETE, f"{API}/subscriptions/{SU}", body=requests.ReadTimeout("read timed out"))
    recurrente_api.add(responses_lib.GET, f"{API}/subscriptions/{SU}", json=subscription_reading("active"))
    subscription = Subscription.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/checkout/subscription/", {"action": "cancel", "_selected_action": [str(subscription.pk)]}, follow=True,
        )

    [(level, text)] = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert level == "error" and SU in text and "may or may not be cancelled" in text
    assert "Nothing was changed" not in text
    assert Subscription.objects.get().cancel_requested_at is None
    assert len(staff_alerts()) == 1


# --- Cancel, reactivate and the period's end, in every order: newer provider state wins ----------

T_PORTAL = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
BEFORE_PORTAL = T_PORTAL - timedelta(days=1)
AFTER_PORTAL = T_PORTAL + timedelta(minutes=1)
MID_PERIOD = datetime(2026, 12, 10, 10, 0, tzinfo=UTC)
LATER_MID_PERIOD = datetime(2026, 12, 15, 10, 0, tzinfo=UTC)
T_END = PERIOD_END + timedelta(minutes=1)
AFTER_END = PERIOD_END + timedelta(days=1)


def update_event(at: datetime) -> dict:
    payload = subscription_event("subscription.create.json", created_at=at.isoformat())
    payload["event_type"] = "subscription.update"
    return payload


def renewal_event(at: datetime) -> dict:
    payload = recurrente_fixture("events/payment_intent.succeeded.subscription.json")
    payload["id"], payload["created_at"] = "pa_renewal_after_cancel", at.isoformat()
    return payload


def reactivate_event(at: datetime) -> dict:
    payload = subscription_event("subscription.unpause.json", created_at=at.isoformat())
    payload["event_type"] = "subscription.reactivate"
    return payload


ORDERINGS = {
    # name: (steps, final subscription status, cancellation still on record, final site status, owner emails)
    "portal, cancel event, newer reactivate, period end": (
        [("portal", T_PORTAL), ("cancel", AFTER_PORTAL), ("reactivate", MID_PERIOD), ("end", T_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled"],
    ),
    "portal, newer reactivate, period end (no cancel event ever)": (
        [("portal", T_PORTAL), ("reactivate", MID_PERIOD), ("end", T_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled"],
    ),
    "portal, reactivate, the older cancel event delivered late, period end": (
        [("portal", T_PORTAL), ("reactivate", MID_PERIOD), ("cancel", AFTER_PORTAL), ("end", T_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled"],
    ),
    "portal, period end, reactivate after it": (
        [("portal", T_PORTAL), ("end", T_END), ("reactivate", AFTER_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled", "ended"],
    ),
    "portal, period end, the older cancel event": (
        [("portal", T_PORTAL), ("end", T_END), ("cancel", AFTER_PORTAL)],
        Subscription.Status.CANCELLED, True, Site.Status.SUSPENDED, ["cancel_scheduled", "ended"],
    ),
    "portal, cancel event, period end": (
        [("portal", T_PORTAL), ("cancel", AFTER_PORTAL), ("end", T_END)],
        Subscription.Status.CANCELLED, True, Site.Status.SUSPENDED, ["cancel_scheduled", "ended"],
    ),
    "portal, a reactivate older than the portal cancel, period end": (
        [("portal", T_PORTAL), ("reactivate", BEFORE_PORTAL), ("end", T_END)],
        Subscription.Status.CANCELLED, True, Site.Status.SUSPENDED, ["cancel_scheduled", "ended"],
    ),
    "cancel event only, newer reactivate, period end": (
        [("cancel", AFTER_PORTAL), ("reactivate", MID_PERIOD), ("end", T_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled"],
    ),
    "cancel event, period end, a reactivate older than the cancel": (
        [("cancel", AFTER_PORTAL), ("end", T_END), ("reactivate", T_PORTAL)],
        Subscription.Status.CANCELLED, True, Site.Status.SUSPENDED, ["cancel_scheduled", "ended"],
    ),
    "portal, cancel, reactivate, cancelled again, period end (the owner is told of each cancellation)": (
        [("portal", T_PORTAL), ("cancel", AFTER_PORTAL), ("reactivate", MID_PERIOD), ("cancel", LATER_MID_PERIOD), ("end", T_END)],
        Subscription.Status.CANCELLED, True, Site.Status.SUSPENDED, ["cancel_scheduled", "cancel_scheduled", "ended"],
    ),
    "portal, period end, then a reactivate dated before the end, delivered late": (
        [("portal", T_PORTAL), ("end", T_END), ("reactivate", MID_PERIOD)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled", "ended"],
    ),
    "portal, a newer 'something changed' that reads active, period end (active is no proof of a reactivation)": (
        [("portal", T_PORTAL), ("update", MID_PERIOD), ("end", T_END)],
        Subscription.Status.CANCELLED, True, Site.Status.SUSPENDED, ["cancel_scheduled", "ended"],
    ),
    "portal, a newer 'something changed' read, then the older reactivate it followed, period end": (
        [("portal", T_PORTAL), ("update", MID_PERIOD + timedelta(hours=1)), ("reactivate", MID_PERIOD), ("end", T_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled"],
    ),
    "portal, period end, then a 'something changed' that reads active (our own inference is no report)": (
        [("portal", T_PORTAL), ("end", T_END), ("update", AFTER_END)],
        Subscription.Status.CANCELLED, True, Site.Status.SUSPENDED, ["cancel_scheduled", "ended"],
    ),
    "portal, period end, Recurrente's cancel, a newer reactivate": (
        [("portal", T_PORTAL), ("end", T_END), ("cancel", T_END + timedelta(minutes=5)), ("reactivate", AFTER_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled", "ended"],
    ),
    "portal, a newer renewal charge, period end": (
        [("portal", T_PORTAL), ("renewal", MID_PERIOD), ("end", T_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, ["cancel_scheduled"],
    ),
    "period end with no cancellation at all": (
        [("end", T_END)],
        Subscription.Status.ACTIVE, False, Site.Status.ACTIVE, [],
    ),
}


@pytest.mark.parametrize("name", list(ORDERINGS))
def test_cancel_reactivate_and_period_end_in_every_order(name, client, owner, live_site, api_ok, django_capture_on_commit_callbacks):
    steps, status, cancellation_kept, site_status, reasons = ORDERINGS[name]
    Subscription.objects.update(current_period_end=PERIOD_END)
    for step, at in steps:
        with django_capture_on_commit_callbacks(execute=True):
            if step == "portal":
                client.force_login(owner)
                with freeze_time(at):
                    assert client.post(cancel_url(live_site)).status_code == 303
                client.logout()
            elif step == "cancel":
                assert post_event(client, subscription_event("subscription.cancel.json", created_at=at.isoformat())).status_code == 200
            elif step == "reactivate":
                assert post_event(client, reactivate_event(at)).status_code == 200
            elif step == "update":  # Recurrente's GET (api_ok) still reads `active`
                assert post_event(client, update_event(at)).status_code == 200
            elif step == "renewal":
                assert post_event(client, renewal_event(at)).status_code == 200
            else:
                with freeze_time(at):
                    suspend_ended_subscriptions.delay()
    subscription = Subscription.objects.get()
    assert subscription.status == status
    assert (subscription.cancel_requested_at is not None or subscription.cancelled_at is not None) == cancellation_kept
    assert Site.objects.get(pk=live_site.pk).status == site_status
    sent = EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED).order_by("created_at")
    assert [log.context["reason"] for log in sent] == reasons
