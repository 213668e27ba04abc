"""The one open-or-create for checkout sessions (checkout/services/sessions.py): no lock is held
while Recurrente is asked, and a second request for the same session waits for the first one's
answer instead of creating a second checkout."""

import json
import logging
import threading
import time
from datetime import timedelta

import pytest
import responses as responses_lib
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from checkout.models import CheckoutSession
from checkout.services import sessions
from checkout.services.purchase import RequestContext, purchase_start
from checkout.tests.conftest import API
from sites.models import Site

REQUEST = RequestContext(ip_address="203.0.113.7", user_agent="test", referrer="")


def start(site):
    return purchase_start(site_id=site.pk, full_name="María López", email="maria@example.com", request_context=REQUEST)


def posted_checkouts(mock) -> int:
    return sum(1 for call in mock.calls if call.request.method == "POST" and call.request.url.endswith("/checkouts"))


def lockable_now(model, pk) -> bool:
    """From another connection: can this row be locked right away?"""
    answer = []

    def probe():
        try:
            with transaction.atomic():
                model.objects.select_for_update(nowait=True).get(pk=pk)
            answer.append(True)
        except OperationalError:
            answer.append(False)
        finally:
            connection.close()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(timeout=10)
    return answer == [True]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_row_is_locked_while_recurrente_creates_the_checkout(preview_site, recurrente_api):
    seen = {}

    def create(request):
        session = CheckoutSession.objects.get()
        seen["session_lockable"] = lockable_now(CheckoutSession, session.pk)
        seen["site_lockable"] = lockable_now(Site, preview_site.pk)
        seen["claimed"] = session.checkout_requested_at is not None
        return 201, {}, json.dumps({"id": "ch_nolock", "checkout_url": "https://app.recurrente.com/checkout-session/ch_nolock"})

    recurrente_api.add_callback(responses_lib.POST, f"{API}/checkouts", callback=create)
    session = start(preview_site)
    assert seen == {"session_lockable": True, "site_lockable": True, "claimed": True}
    assert session.status == CheckoutSession.Status.CHECKOUT_CREATED and session.checkout_requested_at is None


@pytest.mark.django_db(transaction=True)
def test_a_request_finding_the_checkout_in_the_making_waits_for_it_and_never_calls_recurrente(preview_site, recurrente_api):
    session = CheckoutSession.objects.create(
        site=preview_site, status=CheckoutSession.Status.INITIATED, customer_name="María López",
        customer_email="maria@example.com", amount=preview_site.purchase_amount, checkout_requested_at=timezone.now(),
    )

    def the_first_request_gets_its_answer():
        time.sleep(0.5)
        CheckoutSession.objects.filter(pk=session.pk).update(
            status=CheckoutSession.Status.CHECKOUT_CREATED, recurrente_checkout_id="ch_first",
            checkout_url="https://app.recurrente.com/checkout-session/ch_first", checkout_requested_at=None,
        )
        connection.close()

    other = threading.Thread(target=the_first_request_gets_its_answer)
    other.start()
    got = start(preview_site)
    other.join()
    assert (got.pk, got.recurrente_checkout_id) == (session.pk, "ch_first")
    assert posted_checkouts(recurrente_api) == 0
    assert CheckoutSession.objects.count() == 1


@pytest.mark.django_db
def test_a_claim_older_than_any_call_is_taken_over(preview_site, checkout_created):
    # The request that claimed it died mid-call: the buyer's next click must still get a checkout.
    session = CheckoutSession.objects.create(
        site=preview_site, status=CheckoutSession.Status.INITIATED, customer_name="María López",
        customer_email="maria@example.com", amount=preview_site.purchase_amount,
        checkout_requested_at=timezone.now() - timedelta(minutes=5),
    )
    created = sessions.checkout_create(session_id=session.pk, payload_builder=lambda s: {"items": []})
    assert created.pk == session.pk and created.status == CheckoutSession.Status.CHECKOUT_CREATED
    assert posted_checkouts(checkout_created) == 1


@pytest.mark.django_db
def test_a_failed_call_releases_its_claim_and_keeps_the_lead(preview_site, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/checkouts", status=503, json={"message": "down"})
    with pytest.raises(sessions.CheckoutUnavailable) as failure:
        start(preview_site)
    session = CheckoutSession.objects.get()
    assert failure.value.session.pk == session.pk
    assert session.status == CheckoutSession.Status.INITIATED and session.checkout_requested_at is None
    assert "RecurrenteUnavailable" in session.checkout_error


@pytest.mark.django_db
def test_a_checkout_created_after_another_was_stored_does_not_replace_it(preview_site, caplog):
    # Only possible when a call outlived its deadline and another request took the claim over.
    session = CheckoutSession.objects.create(
        site=preview_site, status=CheckoutSession.Status.CHECKOUT_CREATED, customer_name="María López",
        customer_email="maria@example.com", amount=preview_site.purchase_amount, recurrente_checkout_id="ch_first",
        checkout_url="https://app.recurrente.com/checkout-session/ch_first",
    )
    with caplog.at_level(logging.WARNING, logger="checkout.services.sessions"):
        kept = sessions._checkout_record(session=session, checkout_id="ch_late", checkout_url="https://app.recurrente.com/x")
    assert kept.recurrente_checkout_id == "ch_first"
    assert "created too late" in caplog.text


@pytest.mark.django_db
def test_any_failure_mid_call_gives_the_claim_back(preview_site, checkout_created):
    def broken_payload(session):
        raise RuntimeError("a bug while building the payload")

    session = CheckoutSession.objects.create(
        site=preview_site, status=CheckoutSession.Status.INITIATED, customer_name="María López",
        customer_email="maria@example.com", amount=preview_site.purchase_amount,
    )
    with pytest.raises(RuntimeError):
        sessions.checkout_create(session_id=session.pk, payload_builder=broken_payload)
    session.refresh_from_db()
    assert session.checkout_requested_at is None
    # So the next click asks Recurrente at once instead of waiting for a claim nobody will answer.
    started = time.monotonic()
    created = sessions.checkout_create(session_id=session.pk, payload_builder=lambda s: {"items": []})
    assert created.status == CheckoutSession.Status.CHECKOUT_CREATED and time.monotonic() - started < 2


@pytest.mark.django_db
def test_a_waiter_gives_up_with_try_again_rather_than_call_recurrente_itself(preview_site, checkout_created, monkeypatch):
    monkeypatch.setattr(sessions, "_call_deadline", lambda: timedelta(seconds=0.6))
    session = CheckoutSession.objects.create(
        site=preview_site, status=CheckoutSession.Status.INITIATED, customer_name="María López",
        customer_email="maria@example.com", amount=preview_site.purchase_amount, checkout_requested_at=timezone.now(),
    )
    with pytest.raises(sessions.CheckoutUnavailable):
        sessions.checkout_create(session_id=session.pk, payload_builder=lambda s: {"items": []})
    # The claim went stale while it waited, but a request that has waited never takes it over.
    assert posted_checkouts(checkout_created) == 0


@pytest.mark.django_db
def test_a_failed_call_that_lost_its_claim_leaves_the_new_claimant_alone(preview_site, recurrente_api):
    session = CheckoutSession.objects.create(
        site=preview_site, status=CheckoutSession.Status.INITIATED, customer_name="María López",
        customer_email="maria@example.com", amount=preview_site.purchase_amount,
    )
    takeover = timezone.now() + timedelta(seconds=30)

    def slow_then_down(request):
        # Meanwhile our claim went stale and another request took the session over.
        CheckoutSession.objects.filter(pk=session.pk).update(checkout_requested_at=takeover)
        return 503, {}, json.dumps({"message": "down"})

    recurrente_api.add_callback(responses_lib.POST, f"{API}/checkouts", callback=slow_then_down)
    with pytest.raises(sessions.CheckoutUnavailable):
        sessions.checkout_create(session_id=session.pk, payload_builder=lambda s: {"items": []})
    session.refresh_from_db()
    assert session.checkout_requested_at == takeover and session.checkout_error == ""
