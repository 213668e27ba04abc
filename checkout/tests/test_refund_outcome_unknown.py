"""A refund request without a clear answer (DESIGN §8; recurrente/README: the refund object, which
names no payment, is the only link to the refund). When Recurrente may have acted (a read timeout,
the connection dropped after sending, a 5xx, a redirect), staff are told the outcome is unknown and
how to find out, the payment is marked so no second refund is asked for, and it stays so until
staff record the dashboard refund or say no refund was made. A request that certainly never left
(connection refused, DNS, connect timeout) or that Recurrente refused changed nothing."""


import pytest
import responses as responses_lib
from django.contrib.auth.models import Permission

from checkout.models import Payment, Refund
from checkout.services import refunds
from checkout.tests.factories import PaymentFactory
from customers.tests.factories import CustomerFactory
from sites.tests.factories import SiteFactory

from .conftest import API
from .recurrente_faults import maybe_acted, never_sent
from .test_refunds import BUYER, PAYMENTS, RE_ID, RECORD, act, customer_mails, got_refund, posts, refund_answer, staff_mails, state

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment(db):
    buyer = CustomerFactory(email=BUYER, full_name="María López")
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros")
    return PaymentFactory(recurrente_payment_id="pa_ttr2w9xk", recurrente_intent_id="in_y7c2p4lq", site=site, user=buyer)


MAYBE_ACTED = maybe_acted("https://elsewhere.example/refunds")

NOTHING_CHANGED = {
    **{name: (answer, "Nothing was changed; try again later") for name, answer in never_sent("/api/refunds").items()},
    "429": ({"status": 429, "json": {"message": "Too many requests"}}, "Nothing was changed; try again later"),
    "401": ({"status": 401, "json": {"message": "Invalid keys"}}, "Nothing was changed"),
    "422": ({"status": 422, "json": {"message": "No se pudo", "errors": {"intent_id": ["no es válido"]}}},
            "Nothing was changed"),
}


def unknown_since(payment):
    payment.refresh_from_db()
    return payment.refund_outcome_unknown_since


def request_with_unclear_answer(staff_client, recurrente_api, payment, django_capture_on_commit_callbacks, fault="read timeout"):
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", **MAYBE_ACTED[fault])
    with django_capture_on_commit_callbacks(execute=True):
        return act(staff_client, PAYMENTS, "refund", [payment.pk])


@pytest.mark.parametrize("fault", MAYBE_ACTED)
def test_an_unclear_answer_tells_staff_the_outcome_is_unknown_and_blocks_a_second_refund(
        staff_client, recurrente_api, payment, fault, django_capture_on_commit_callbacks):
    notes = request_with_unclear_answer(staff_client, recurrente_api, payment, django_capture_on_commit_callbacks, fault)

    [(level, text)] = notes
    assert level == "error"
    assert "the outcome is unknown" in text and "Nothing was changed" not in text
    assert "Recurrente's dashboard" in text and "Record a dashboard refund" in text and "no refund was made" in text
    assert unknown_since(payment) is not None
    assert state(payment) == (Payment.Status.SUCCEEDED, "")  # as far as we know the money is still here
    assert "outcome unknown" in payment.flag_note
    assert not Refund.objects.exists() and customer_mails() == []
    [alert] = staff_mails("outcome unknown")
    assert "pa_ttr2w9xk" in alert.subject and "Record a dashboard refund" in alert.body
    if fault == "redirect":
        assert [c.request.url for c in recurrente_api.calls] == [f"{API}/refunds"]  # never followed

    # A second request is refused before Recurrente is asked: it may already have refunded.
    [(level, text)] = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert level == "warning" and "got no clear answer" in text and "Recurrente's dashboard" in text
    assert len(posts(recurrente_api)) == 1
    with pytest.raises(refunds.RefundRefused):
        refunds.payment_refund_request(payment_id=payment.pk, staff_user=staff_client.user)
    assert len(posts(recurrente_api)) == 1

    listing = staff_client.get(PAYMENTS + "?attention=yes").content.decode()
    assert "pa_ttr2w9xk" in listing and "Refund outcome unknown" in listing


@pytest.mark.parametrize("fault", NOTHING_CHANGED)
def test_a_request_that_never_reached_recurrente_or_was_refused_changed_nothing(
        staff_client, recurrente_api, payment, fault, django_capture_on_commit_callbacks):
    answer, said = NOTHING_CHANGED[fault]
    recurrente_api.add(responses_lib.POST, f"{API}/refunds", **answer)
    with django_capture_on_commit_callbacks(execute=True):
        [(level, text)] = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert level == "error" and said in text and "unknown" not in text
    assert unknown_since(payment) is None and state(payment) == (Payment.Status.SUCCEEDED, "")
    assert staff_mails("outcome unknown") == []

    # Nothing is blocked: the next request goes to Recurrente.
    recurrente_api.replace(responses_lib.POST, f"{API}/refunds", json=refund_answer("succeeded"), status=201)
    with django_capture_on_commit_callbacks(execute=True):
        [(level, _)] = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert level == "success" and len(posts(recurrente_api)) == 2
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)


def test_recording_the_dashboard_refund_resolves_the_unknown_outcome(staff_client, recurrente_api, payment,
                                                                     django_capture_on_commit_callbacks):
    request_with_unclear_answer(staff_client, recurrente_api, payment, django_capture_on_commit_callbacks)
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(RECORD, {"payment": "pa_ttr2w9xk", "refund_id": RE_ID}, follow=True)
    assert response.status_code == 200
    assert unknown_since(payment) is None
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)
    assert Refund.objects.get().source == Refund.Source.DASHBOARD
    assert len(customer_mails()) == 1
    assert len(posts(recurrente_api)) == 1


def test_a_failed_refund_found_in_the_dashboard_resolves_it_and_the_payment_can_be_refunded(
        staff_client, recurrente_api, payment, django_capture_on_commit_callbacks):
    request_with_unclear_answer(staff_client, recurrente_api, payment, django_capture_on_commit_callbacks, "503")
    recurrente_api.add(responses_lib.GET, f"{API}/refunds/{RE_ID}", json=got_refund(status="failed"))
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(RECORD, {"payment": "pa_ttr2w9xk", "refund_id": RE_ID}, follow=True)
    assert unknown_since(payment) is None and state(payment) == (Payment.Status.SUCCEEDED, "")

    recurrente_api.replace(responses_lib.POST, f"{API}/refunds", json=refund_answer("succeeded", "re_second01"), status=201)
    with django_capture_on_commit_callbacks(execute=True):
        [(level, _)] = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert level == "success" and state(payment) == (Payment.Status.REFUNDED, "re_second01")


def test_staff_saying_no_refund_was_made_resolves_it_and_the_payment_can_be_refunded(
        staff_client, recurrente_api, payment, django_capture_on_commit_callbacks):
    request_with_unclear_answer(staff_client, recurrente_api, payment, django_capture_on_commit_callbacks)
    untouched = PaymentFactory(recurrente_payment_id="pa_other001")

    notes = act(staff_client, PAYMENTS, "refund_outcome_none", [payment.pk, untouched.pk])
    assert ("success", "pa_ttr2w9xk: recorded that no refund was made; it can be refunded again.") in notes
    assert ("warning", "pa_other001: no refund with an unknown outcome; nothing changed.") in notes
    assert unknown_since(payment) is None and state(payment) == (Payment.Status.SUCCEEDED, "")
    assert "no refund was made" in payment.flag_note and f"staff {staff_client.user.pk}" in payment.flag_note
    untouched_before = Payment.objects.filter(pk=untouched.pk).values("flag_note", "updated_at").get()
    assert untouched_before["flag_note"] == ""

    recurrente_api.replace(responses_lib.POST, f"{API}/refunds", json=refund_answer("succeeded"), status=201)
    with django_capture_on_commit_callbacks(execute=True):
        [(level, _)] = act(staff_client, PAYMENTS, "refund", [payment.pk])
    assert level == "success" and len(posts(recurrente_api)) == 2
    assert state(payment) == (Payment.Status.REFUNDED, RE_ID)


def test_view_only_staff_cannot_say_no_refund_was_made(client, django_user_model, staff_client, recurrente_api, payment,
                                                      django_capture_on_commit_callbacks):
    request_with_unclear_answer(staff_client, recurrente_api, payment, django_capture_on_commit_callbacks)
    viewer = django_user_model.objects.create_user("viewer@webmagic.test", "a long enough password 1", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_payment"))
    viewer_client = type(client)()
    viewer_client.force_login(viewer)
    assert 'value="refund_outcome_none"' not in viewer_client.get(PAYMENTS).content.decode()
    viewer_client.post(PAYMENTS, {"action": "refund_outcome_none", "_selected_action": [str(payment.pk)]})
    assert unknown_since(payment) is not None


def test_with_the_cache_down_a_refund_is_refused_before_anything_is_sent(
        staff_client, recurrente_api, payment, settings, django_capture_on_commit_callbacks):
    from webmagic.tests.outage import cache_unreachable

    recurrente_api.add(responses_lib.POST, f"{API}/refunds", json=refund_answer("succeeded"), status=201)
    cache_unreachable(settings)
    with django_capture_on_commit_callbacks(execute=True):
        [(level, text)] = act(staff_client, PAYMENTS, "refund", [payment.pk])  # a message, never a 500
    assert level == "warning" and "cache (Redis) is down: nothing was sent" in text  # as other refusals
    assert posts(recurrente_api) == [] and unknown_since(payment) is None
    assert state(payment) == (Payment.Status.SUCCEEDED, "")
