import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from checkout.models import CheckoutSession, Payment, Subscription
from checkout.recurrente import RecurrenteNotFound, RecurrenteUnavailable
from checkout.recurrente_data import payment_confirmation_from_event
from checkout.services.confirmations import payment_confirmed_record
from checkout.services.subscriptions import subscription_periods_end, subscription_status_record
from checkout.tests.factories import CheckoutSessionFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks.models import WebhookEvent
from webmagic.models import EmailLog

from .helpers import payment_event, subscription_event

pytestmark = pytest.mark.django_db

SU = "su_9xk2p7qv"


class FakeRecurrente:
    def __init__(self, checkout_id="", error=None):
        self.checkout_id, self.error, self.calls = checkout_id, error, []

    def get_subscription(self, subscription_id):
        self.calls.append(subscription_id)
        if self.error:
            raise self.error
        body = recurrente_fixture("api/get_subscription.response.json")
        body["checkout"]["id"] = self.checkout_id
        return body


@pytest.fixture
def hosting_session(db):
    owner = CustomerFactory(email="maria.lopez@example.com")
    site = SiteFactory(status=Site.Status.OWNED, owner=owner)
    return CheckoutSessionFactory(
        site=site, kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"), user=owner,
        customer_email=owner.email, recurrente_checkout_id="ch_r2m9wq8z4kx7t1ce",
    )


@pytest.fixture
def api(monkeypatch, hosting_session):
    fake = FakeRecurrente(checkout_id=hosting_session.recurrente_checkout_id)
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    return fake


def first_payment(session, payment_id="pa_h3k8r2mz"):
    return payment_event("payment_intent.succeeded.subscription.json", session=session, payment_id=payment_id, subscription_id=SU)


def test_subscription_create_before_its_payment(hosting_session, api, deliver):
    deliver(subscription_event())
    subscription = Subscription.objects.get(recurrente_subscription_id=SU)
    assert subscription.status == Subscription.Status.ACTIVE
    assert subscription.site_id == hosting_session.site_id and subscription.user == hosting_session.user
    assert subscription.current_period_end is not None and subscription.last_event_at is not None
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE
    assert CheckoutSession.objects.get(pk=hosting_session.pk).status == CheckoutSession.Status.COMPLETED
    assert api.calls == [SU]

    deliver(first_payment(hosting_session))
    payment = Payment.objects.get()
    assert (payment.kind, payment.subscription, payment.amount) == (Payment.Kind.SUBSCRIPTION, subscription, Decimal("95.00"))
    assert Subscription.objects.count() == 1
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}


def test_the_first_payment_before_subscription_create(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    subscription = Subscription.objects.get(recurrente_subscription_id=SU)
    assert subscription.status == Subscription.Status.ACTIVE
    assert Payment.objects.get().subscription == subscription
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE

    deliver(subscription_event())
    assert api.calls == []  # the recorded payment already linked su_… to our checkout
    assert Subscription.objects.count() == 1
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE


def test_an_older_event_never_overwrites_a_newer_state(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.cancel.json"))  # 2027-01-02
    deliver(subscription_event("subscription.past_due.json"))  # 2026-12-21, delivered late
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.CANCELLED and subscription.cancelled_at is not None
    assert WebhookEvent.objects.filter(event_type="subscription.past_due").get().status == WebhookEvent.Status.PROCESSED


def test_pause_suspends_the_site_and_unpause_brings_it_back(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.pause.json"))
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.SUSPENDED
    assert Subscription.objects.get().status == Subscription.Status.PAUSED
    deliver(subscription_event("subscription.unpause.json"))
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE


def test_past_due_keeps_the_site_live(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.past_due.json"))
    assert Subscription.objects.get().status == Subscription.Status.PAST_DUE
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE


def test_a_renewal_payment_adds_a_payment_to_the_known_subscription(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    renewal = payment_event(
        "payment_intent.succeeded.subscription.json", checkout_id="ch_renewal0000001", payment_id="pa_month2", subscription_id=SU
    )
    renewal["created_at"] = "2026-12-21T09:02:17.101-06:00"
    deliver(renewal)
    subscription = Subscription.objects.get()
    assert sorted(subscription.payments.values_list("recurrente_payment_id", flat=True)) == ["pa_h3k8r2mz", "pa_month2"]
    assert Payment.objects.get(recurrente_payment_id="pa_month2").user == hosting_session.user


def test_a_subscription_recurrente_does_not_know_is_ignored(hosting_session, monkeypatch, deliver):
    fake = FakeRecurrente(error=RecurrenteNotFound("no", status=404))
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    deliver(subscription_event(subscription_id="su_unknown1"))
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED and "unknown_subscription" in event.error
    assert Subscription.objects.count() == 0


def test_recurrente_unavailable_fails_the_event_for_a_retry(hosting_session, monkeypatch, deliver):
    fake = FakeRecurrente(error=RecurrenteUnavailable("timeout"))
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    deliver(subscription_event())
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.FAILED and "RecurrenteUnavailable" in event.error
    assert event.next_retry_at is not None


def test_a_first_payment_naming_no_subscription_is_linked_when_subscription_create_arrives(hosting_session, api, deliver):
    payload = first_payment(hosting_session)
    for holder in (payload["payment"], payload["checkout"]["payment"]):
        holder["paymentable"] = {"type": "OneTimePayment", "id": "on_x"}
    deliver(payload)
    assert Payment.objects.get().subscription is None
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.OWNED  # nothing says it is live yet

    deliver(subscription_event())
    subscription = Subscription.objects.get()
    assert Payment.objects.get().subscription == subscription
    assert Site.objects.get(pk=hosting_session.site_id).status == Site.Status.ACTIVE
    assert api.calls == []


# --- Emails and the site, transition by transition (issue 6) -------------------------------------

def emails(kind):
    return list(EmailLog.objects.filter(kind=kind).order_by("created_at"))


def site_status(session):
    return Site.objects.get(pk=session.site_id).status


def later(name, when, **kwargs):
    """A subscription event of this fixture, stamped at `when` (an aware datetime)."""
    return subscription_event(name, created_at=when.isoformat(), **kwargs)


def test_activation_sends_one_email_whatever_the_order_and_duplicates(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event())
    deliver(subscription_event())  # Svix retry under a new delivery id: same event, same time
    payment_again = first_payment(hosting_session)
    payment_again["event_type"] = "intent.succeeded"
    deliver(payment_again)

    [log] = emails(EmailLog.Kind.HOSTING_ACTIVATED)
    assert log.to_email == hosting_session.user.email and log.dedupe_key.startswith("hosting_activated:")
    assert len([m for m in mail.outbox if "is live" in m.subject]) == 1
    message = next(m for m in mail.outbox if "is live" in m.subject)
    assert "http://testserver/portal/sites/" in message.body and "is now live" in message.body
    assert Payment.objects.count() == 1


def test_past_due_warns_once_and_keeps_the_site_live(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.past_due.json"))
    deliver(subscription_event("subscription.past_due.json"))
    assert site_status(hosting_session) == Site.Status.ACTIVE
    [log] = emails(EmailLog.Kind.PAYMENT_PROBLEM)
    assert log.context["amount"] == "$95"
    message = next(m for m in mail.outbox if m.to == [log.to_email] and "did not go through" in m.subject)
    assert "still live" in message.body


def test_pause_suspends_and_emails_once_then_unpause_reactivates_and_emails(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.pause.json"))
    deliver(subscription_event("subscription.pause.json"))  # the same event delivered again
    assert site_status(hosting_session) == Site.Status.SUSPENDED
    [suspended] = emails(EmailLog.Kind.HOSTING_SUSPENDED)
    assert suspended.context["reason"] == "paused"

    deliver(subscription_event("subscription.unpause.json"))
    assert site_status(hosting_session) == Site.Status.ACTIVE
    activated = emails(EmailLog.Kind.HOSTING_ACTIVATED)
    assert [log.context["reactivated"] for log in activated] == [False, True]


def test_the_older_name_paused_is_accepted(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    payload = subscription_event("subscription.pause.json")
    payload["event_type"] = "subscription.paused"
    deliver(payload)
    assert site_status(hosting_session) == Site.Status.SUSPENDED
    assert Subscription.objects.get().status == Subscription.Status.PAUSED


def test_a_late_pause_after_the_unpause_changes_nothing(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.unpause.json"))  # 2026-12-28
    deliver(subscription_event("subscription.pause.json"))  # 2026-12-26, delivered late
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE
    assert site_status(hosting_session) == Site.Status.ACTIVE
    assert emails(EmailLog.Kind.HOSTING_SUSPENDED) == []


def test_a_late_subscription_create_after_a_pause_does_not_bring_the_site_back(hosting_session, api, deliver):
    deliver(subscription_event("subscription.pause.json"))  # the first news we get is the pause
    assert Subscription.objects.get().status == Subscription.Status.PAUSED
    deliver(subscription_event())  # created earlier, delivered later
    deliver(first_payment(hosting_session))  # paid earlier still
    assert Subscription.objects.get().status == Subscription.Status.PAUSED
    assert site_status(hosting_session) == Site.Status.OWNED
    assert Payment.objects.count() == 1


def test_cancel_with_paid_time_left_keeps_the_site_live_until_the_period_ends(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    subscription = Subscription.objects.get()
    period_end = subscription.current_period_end
    assert period_end > timezone.now()
    deliver(subscription_event("subscription.cancel.json"))
    assert Subscription.objects.get().status == Subscription.Status.CANCELLED
    assert site_status(hosting_session) == Site.Status.ACTIVE
    [notice] = emails(EmailLog.Kind.HOSTING_SUSPENDED)
    assert notice.context["reason"] == "cancel_scheduled" and notice.context["live_until"]

    assert subscription_periods_end(now=period_end - timedelta(minutes=1)) == 0
    assert site_status(hosting_session) == Site.Status.ACTIVE
    assert subscription_periods_end(now=period_end + timedelta(minutes=1)) == 1
    assert subscription_periods_end(now=period_end + timedelta(hours=1)) == 0
    assert site_status(hosting_session) == Site.Status.SUSPENDED
    assert [log.context["reason"] for log in emails(EmailLog.Kind.HOSTING_SUSPENDED)] == ["cancel_scheduled", "ended"]


def test_cancel_after_failed_renewals_suspends_at_once(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.past_due.json"))
    deliver(subscription_event("subscription.cancel.json"))
    assert site_status(hosting_session) == Site.Status.SUSPENDED
    [log] = emails(EmailLog.Kind.HOSTING_SUSPENDED)
    assert log.context["reason"] == "cancelled"


def test_cancel_with_the_period_over_suspends_at_once(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    Subscription.objects.update(current_period_end=timezone.now() - timedelta(days=1))
    deliver(subscription_event("subscription.cancel.json"))
    assert site_status(hosting_session) == Site.Status.SUSPENDED


def test_reactivate_after_a_cancellation_puts_the_site_back(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.past_due.json"))
    deliver(subscription_event("subscription.cancel.json"))  # 2027-01-02
    payload = later("subscription.unpause.json", datetime(2027, 1, 5, tzinfo=UTC))
    payload["event_type"] = "subscription.reactivate"
    deliver(payload)
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE
    assert site_status(hosting_session) == Site.Status.ACTIVE


def test_a_new_subscription_is_not_taken_down_by_the_old_one_ending(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.pause.json"))
    assert site_status(hosting_session) == Site.Status.SUSPENDED
    new_session = CheckoutSessionFactory(
        site=hosting_session.site, kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"),
        user=hosting_session.user, customer_email=hosting_session.customer_email,
    )
    deliver(payment_event(
        "payment_intent.succeeded.subscription.json", session=new_session, payment_id="pa_second1", subscription_id="su_second1"
    ))
    assert site_status(hosting_session) == Site.Status.ACTIVE
    deliver(later("subscription.cancel.json", datetime(2027, 2, 1, tzinfo=UTC)))  # the old, paused one
    assert Subscription.objects.get(recurrente_subscription_id=SU).status == Subscription.Status.CANCELLED
    assert site_status(hosting_session) == Site.Status.ACTIVE


def test_an_old_paused_subscription_unpaused_next_to_a_new_one_alerts_staff(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.pause.json"))
    new_session = CheckoutSessionFactory(
        site=hosting_session.site, kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"), user=hosting_session.user,
    )
    deliver(payment_event(
        "payment_intent.succeeded.subscription.json", session=new_session, payment_id="pa_second1", subscription_id="su_second1"
    ))
    deliver(subscription_event("subscription.unpause.json"))  # the old one comes back: charged twice
    assert Subscription.objects.filter(status=Subscription.Status.ACTIVE).count() == 2
    [alert] = emails(EmailLog.Kind.STAFF_ALERT)
    assert "two hosting subscriptions" in alert.subject


def test_unable_to_start_leaves_the_site_owned(hosting_session, monkeypatch, deliver):
    fake = FakeRecurrente(checkout_id=hosting_session.recurrente_checkout_id)
    original = fake.get_subscription

    def failed_first_charge(subscription_id):
        body = original(subscription_id)
        body["status"] = "unable_to_start"
        return body

    fake.get_subscription = failed_first_charge
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    payload = subscription_event()
    payload["event_type"] = "subscription.update"
    deliver(payload)
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.UNABLE_TO_START
    assert site_status(hosting_session) == Site.Status.OWNED
    assert emails(EmailLog.Kind.HOSTING_ACTIVATED) == []
    assert CheckoutSession.objects.get(pk=hosting_session.pk).status == CheckoutSession.Status.CHECKOUT_CREATED

    payload = subscription_event()
    payload["event_type"] = "subscription.unable_to_start"
    deliver(payload)
    assert site_status(hosting_session) == Site.Status.OWNED


def test_subscription_create_for_a_subscription_that_could_not_start_does_not_activate(hosting_session, monkeypatch, deliver):
    fake = FakeRecurrente(checkout_id=hosting_session.recurrente_checkout_id)
    original = fake.get_subscription
    fake.get_subscription = lambda su: {**original(su), "status": "unable_to_start"}
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    deliver(subscription_event())
    assert Subscription.objects.get().status == Subscription.Status.UNABLE_TO_START
    assert site_status(hosting_session) == Site.Status.OWNED


def renewal(payment_id="pa_month2", created_at="2026-12-21T09:02:17.101-06:00"):
    payload = payment_event(
        "payment_intent.succeeded.subscription.json", checkout_id="ch_renewal0000001", payment_id=payment_id, subscription_id=SU
    )
    payload["created_at"] = created_at
    return payload


def test_a_renewal_extends_the_period_to_what_recurrente_says(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    first_end = Subscription.objects.get().current_period_end
    original = api.get_subscription

    def next_period(subscription_id):
        body = original(subscription_id)
        body["current_period_start"], body["current_period_end"] = body["current_period_end"], "2027-01-21T09:02:17.636-06:00"
        return body

    api.get_subscription = next_period
    deliver(renewal())
    deliver(renewal())  # duplicate: one payment, one extension
    subscription = Subscription.objects.get()
    assert subscription.current_period_end == datetime(2027, 1, 21, 15, 2, 17, 636000, tzinfo=UTC)
    assert subscription.current_period_start == first_end
    assert subscription.payments.count() == 2
    assert emails(EmailLog.Kind.HOSTING_ACTIVATED)[0].dedupe_key == f"hosting_activated:{subscription.pk}"
    assert len(emails(EmailLog.Kind.HOSTING_ACTIVATED)) == 1  # a renewal is not a new activation


def test_a_renewal_extends_the_period_by_a_month_when_recurrente_cannot_say(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    first_end = Subscription.objects.get().current_period_end
    api.error = RecurrenteUnavailable("timeout")
    deliver(renewal())
    subscription = Subscription.objects.get()
    assert subscription.payments.count() == 2
    # The first payment (2026-11-21 15:02:17.101 UTC) bought a month; the renewal one more.
    assert first_end == datetime(2026, 12, 21, 15, 2, 17, 101000, tzinfo=UTC)
    assert subscription.current_period_end == datetime(2027, 1, 21, 15, 2, 17, 101000, tzinfo=UTC)


def test_a_renewal_after_past_due_makes_the_subscription_active_again(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    deliver(subscription_event("subscription.past_due.json"))  # 2026-12-21 09:05
    deliver(renewal(created_at="2026-12-23T10:00:00.000-06:00"))  # the retried charge went through
    assert Subscription.objects.get().status == Subscription.Status.ACTIVE
    assert site_status(hosting_session) == Site.Status.ACTIVE
    assert len(emails(EmailLog.Kind.HOSTING_ACTIVATED)) == 1


def test_the_subscription_update_event_mirrors_the_api_state(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    original = api.get_subscription
    api.get_subscription = lambda su: {**original(su), "status": "paused"}
    payload = later("subscription.pause.json", datetime(2026, 12, 1, tzinfo=UTC))
    payload["event_type"] = "subscription.update"
    deliver(payload)
    assert Subscription.objects.get().status == Subscription.Status.PAUSED
    assert site_status(hosting_session) == Site.Status.SUSPENDED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_subscription_create_and_the_first_payment_racing_activate_once(monkeypatch):
    """Two workers, one with each event, at the same moment: one subscription, one payment, one
    activation email (the site row lock serialises them)."""
    owner = CustomerFactory(email="maria.lopez@example.com")
    site = SiteFactory(status=Site.Status.OWNED, owner=owner)
    session = CheckoutSessionFactory(
        site=site, kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"), user=owner,
        customer_email=owner.email, recurrente_checkout_id="ch_r2m9wq8z4kx7t1ce",
    )
    fake = FakeRecurrente(checkout_id=session.recurrente_checkout_id)
    monkeypatch.setattr("checkout.services.subscriptions.recurrente_client", lambda: fake)
    confirmation = payment_confirmation_from_event(first_payment(session))
    created_at = datetime(2026, 11, 21, 15, 2, 18, tzinfo=UTC)
    barrier, errors = threading.Barrier(2), []

    def run(work):
        try:
            barrier.wait(timeout=10)
            work()
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(lambda: payment_confirmed_record(confirmation=confirmation),)),
        threading.Thread(target=run, args=(lambda: subscription_status_record(
            subscription_id=SU, status=Subscription.Status.ACTIVE, event_at=created_at, payment_id="pa_h3k8r2mz"),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.ACTIVE
    assert Payment.objects.get().subscription == subscription
    assert Site.objects.get(pk=site.pk).status == Site.Status.ACTIVE
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_ACTIVATED).count() == 1


def test_a_replayed_older_event_does_not_undo_a_cancellation(hosting_session, api, deliver):
    deliver(first_payment(hosting_session))
    create = subscription_event()
    deliver(create)
    # The owner cancelled in the portal and the paid period is over: the site goes offline.
    Subscription.objects.update(cancel_requested_at=timezone.now(), current_period_end=timezone.now() - timedelta(minutes=1))
    assert subscription_periods_end() == 1
    assert Subscription.objects.get().status == Subscription.Status.CANCELLED
    # Staff reprocess the original subscription.create (same time as the last event applied).
    deliver(create)
    assert Subscription.objects.get().status == Subscription.Status.CANCELLED
    assert site_status(hosting_session) == Site.Status.SUSPENDED
    assert emails(EmailLog.Kind.HOSTING_ACTIVATED)[1:] == []  # no "live again" email
