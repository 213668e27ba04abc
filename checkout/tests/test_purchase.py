import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
import responses as responses_lib
from django.db import connection
from django.test import Client
from django.utils import timezone

from checkout.models import CheckoutSession
from checkout.tests.conftest import API
from customers.tests.factories import CustomerFactory
from sites.models import Site

pytestmark = pytest.mark.django_db

URL = "/sites/la-plumbing-pros/purchase/"
GOOD = {"full_name": "  María   López ", "email": "  Maria.Lopez@Example.COM "}


def post(client, data=GOOD, **extra):
    return client.post(URL, data, HTTP_USER_AGENT="Mozilla/5.0 (iPhone)", HTTP_REFERER="https://mail.example/",
                       REMOTE_ADDR="203.0.113.7", **extra)


def sent_checkout_requests(mock):
    return [json.loads(call.request.body) for call in mock.calls if call.request.url.endswith("/checkouts")]


def test_form_shows_price_and_reminder_notice(client, preview_site):
    body = client.get(URL).content.decode()
    assert "$495" in body and "LA Plumbing Pros" in body
    assert "one reminder" in body and "unsubscribe" in body
    assert 'name="full_name"' in body and 'name="email"' in body and "csrfmiddlewaretoken" in body


def test_valid_post_saves_the_session_then_redirects_303_to_recurrente(client, preview_site, checkout_created):
    response = post(client)
    assert response.status_code == 303
    assert response["Location"] == "https://app.recurrente.com/checkout-session/ch_created0001"
    session = CheckoutSession.objects.get()
    assert session.status == CheckoutSession.Status.CHECKOUT_CREATED
    assert (session.customer_name, session.customer_email) == ("María López", "maria.lopez@example.com")
    assert session.recurrente_checkout_id == "ch_created0001" and session.checkout_url == response["Location"]
    assert session.ip_address == "203.0.113.7"
    assert session.user_agent == "Mozilla/5.0 (iPhone)" and session.referrer == "https://mail.example/"
    assert session.amount == Decimal("495.00") and session.kind == "purchase"


def test_checkout_request_carries_price_in_cents_urls_and_string_metadata(client, preview_site, checkout_created):
    post(client)
    session = CheckoutSession.objects.get()
    [sent] = sent_checkout_requests(checkout_created)
    assert sent["items"] == [{
        "name": "Website — LA Plumbing Pros", "amount_in_cents": 49500, "currency": "USD", "quantity": 1,
        "charge_type": "one_time",
    }]
    assert sent["success_url"] == f"http://testserver/checkout/success/?session={session.pk}"
    assert sent["cancel_url"] == "http://testserver/sites/la-plumbing-pros/?checkout=cancelled"
    assert sent["metadata"] == {
        "checkout_session_id": str(session.pk), "site_id": str(preview_site.pk), "site_slug": "la-plumbing-pros",
        "kind": "purchase",
    }
    assert all(isinstance(v, str) for v in sent["metadata"].values())
    assert checkout_created.calls[0].request.headers["X-SECRET-KEY"] == "sk_test_fake"


def test_price_comes_from_the_site(client, preview_site, checkout_created):
    Site.objects.filter(pk=preview_site.pk).update(purchase_amount=Decimal("650.50"))
    post(client)
    assert sent_checkout_requests(checkout_created)[0]["items"][0]["amount_in_cents"] == 65050


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"full_name": "", "email": "a@example.com"}, "full_name", "Please tell us your name."),
        ({"full_name": "   ", "email": "a@example.com"}, "full_name", "Please tell us your name."),
        ({"full_name": "x" * 10_000, "email": "a@example.com"}, "full_name", "at most 120 characters"),
        ({"full_name": "Ana", "email": ""}, "email", "We need your email"),
        ({"full_name": "Ana", "email": "   "}, "email", "We need your email"),
        ({"full_name": "Ana", "email": "not-an-email"}, "email", "valid email"),
        ({"full_name": "Ana", "email": "a@b@example.com"}, "email", "valid email"),
        ({"full_name": "Ana", "email": ("x" * 250) + "@example.com"}, "email", "at most 254"),
        ({"full_name": "Ana\x00Bob", "email": "a@example.com"}, "full_name", "Null characters are not allowed"),
        ({"full_name": "M", "email": "a@example.com"}, "full_name", "at least two letters"),
        ({"full_name": " J. ", "email": "a@example.com"}, "full_name", "at least two letters"),
    ],
)
def test_bad_input_rerenders_with_errors_and_saves_nothing(client, preview_site, checkout_created, data, field, message):
    response = post(client, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert f'id="id_{field}_error"' in body and f'aria-describedby="id_{field}_error"' in body
    assert CheckoutSession.objects.count() == 0
    assert sent_checkout_requests(checkout_created) == []


def test_values_are_kept_and_escaped_on_error(client, preview_site):
    response = post(client, {"full_name": '"><script>alert(1)</script>', "email": "bad"})
    body = response.content.decode()
    assert "<script>alert(1)</script>" not in body
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in body
    assert 'value="bad"' in body


def test_markup_in_the_name_is_stored_as_text_and_escaped_on_the_success_page(client, preview_site, checkout_created):
    post(client, {"full_name": '"><script>alert(1)</script>', "email": "x@example.com"})
    session = CheckoutSession.objects.get()
    assert session.customer_name == '"><script>alert(1)</script>'
    body = client.get(f"/checkout/success/?session={session.pk}").content.decode()
    assert "<script>alert(1)</script>" not in body


def test_unknown_site_is_404(client, db):
    assert client.get("/sites/nope/purchase/").status_code == 404
    assert client.post("/sites/nope/purchase/", GOOD).status_code == 404


def test_other_methods_are_refused(client, preview_site):
    assert client.put(URL).status_code == 405
    assert client.delete(URL).status_code == 405


def test_double_submit_reuses_the_open_checkout(client, preview_site, checkout_created):
    first = post(client)
    second = post(client, {"full_name": "Maria Lopez", "email": "MARIA.LOPEZ@example.com"})
    assert first["Location"] == second["Location"]
    assert CheckoutSession.objects.count() == 1
    assert len(sent_checkout_requests(checkout_created)) == 1


def test_another_email_gets_its_own_checkout(client, preview_site, checkout_created):
    post(client)
    post(client, {"full_name": "Other", "email": "other@example.com"})
    assert CheckoutSession.objects.count() == 2


def test_an_expired_checkout_is_not_reused(client, preview_site, checkout_created, settings):
    post(client)
    CheckoutSession.objects.update(created_at=timezone.now() - timedelta(hours=settings.CHECKOUT_LIFETIME_HOURS, minutes=1))
    post(client)
    assert CheckoutSession.objects.count() == 2
    assert len(sent_checkout_requests(checkout_created)) == 2


def test_a_site_no_longer_in_preview_cannot_be_bought(client, preview_site, checkout_created):
    Site.objects.filter(pk=preview_site.pk).update(status=Site.Status.OWNED, owner=CustomerFactory())
    for response in (client.get(URL), post(client)):
        assert response.status_code == 409
        assert "already been claimed" in response.content.decode()
    assert CheckoutSession.objects.count() == 0


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "body": "oops"},
        {"status": 401, "json": {"message": "Autenticación Errónea", "errors": {}}},
        {"status": 422, "json": {"message": "No se pudo procesar la solicitud", "errors": {"items": ["x"]}}},
        {"body": requests.ReadTimeout("slow")},
        {"body": requests.ConnectionError("down")},
    ],
)
def test_recurrente_failing_keeps_the_lead_and_shows_try_again(client, preview_site, recurrente_api, answer):
    recurrente_api.add(responses_lib.POST, f"{API}/checkouts", **answer)
    response = post(client)
    assert response.status_code == 503
    body = response.content.decode()
    assert "try again" in body and 'value="María López"' in body
    session = CheckoutSession.objects.get()  # the lead is kept
    assert session.status == CheckoutSession.Status.INITIATED
    assert session.customer_email == "maria.lopez@example.com"
    assert session.checkout_error  # staff can see why


def test_after_a_failure_trying_again_creates_a_checkout(client, preview_site, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/checkouts", status=503)
    recurrente_api.add(responses_lib.POST, f"{API}/checkouts", status=201,
                       json={"id": "ch_second", "checkout_url": "https://app.recurrente.com/checkout-session/ch_second"})
    assert post(client).status_code == 503
    response = post(client)
    assert response.status_code == 303 and response["Location"].endswith("ch_second")


def test_purchase_posts_are_rate_limited_per_ip(client, preview_site):
    statuses = [post(client, {"full_name": "", "email": ""}).status_code for _ in range(11)]
    assert statuses[:10] == [400] * 10
    assert statuses[10] == 429
    assert post(client, {"full_name": "", "email": ""})["Retry-After"] == "60"
    assert "Too many tries" in post(client).content.decode()
    # Another address is not affected.
    assert client.post(URL, {"full_name": "", "email": ""}, REMOTE_ADDR="198.51.100.1").status_code == 400


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_double_submit_creates_one_checkout(preview_site, recurrente_api):
    from django.test import Client

    def slow_create(request):
        time.sleep(0.5)  # Recurrente takes a moment; the twin request arrives meanwhile
        return 201, {}, json.dumps({"id": "ch_only", "checkout_url": "https://app.recurrente.com/checkout-session/ch_only"})

    recurrente_api.add_callback(responses_lib.POST, f"{API}/checkouts", callback=slow_create)
    results = []

    def submit():
        try:
            results.append(post(Client()))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [303, 303]
    assert {r["Location"] for r in results} == {"https://app.recurrente.com/checkout-session/ch_only"}
    assert len(sent_checkout_requests(recurrente_api)) == 1
    assert CheckoutSession.objects.count() == 1


def stranger_posts(data):
    return Client().post(URL, data, HTTP_USER_AGENT="curl/8.5", REMOTE_ADDR="198.51.100.9")


def test_reusing_an_open_checkout_never_changes_the_name_on_it(client, preview_site, checkout_created):
    # Anyone can type the buyer's email: a second submission must not rename the buyer's checkout
    # (the name greets them in the reminder and becomes their account's name when they pay).
    first = post(client)
    second = stranger_posts({"full_name": "Someone Else", "email": " MARIA.LOPEZ@example.com"})
    session = CheckoutSession.objects.get()
    assert session.customer_name == "María López"
    assert (session.ip_address, session.user_agent) == ("203.0.113.7", "Mozilla/5.0 (iPhone)")  # the buyer's request too
    # The response is the same either way (no hint that the email has an open checkout).
    assert second.status_code == first.status_code == 303 and second["Location"] == first["Location"]
    assert len(sent_checkout_requests(checkout_created)) == 1


def test_the_buyers_own_name_reaches_the_reminder_and_the_account_after_a_strangers_submission(
        client, preview_site, checkout_created, recurrente_checkouts, django_capture_on_commit_callbacks):
    from django.core import mail

    from checkout.ledger import PaymentConfirmation
    from checkout.services.confirmations import payment_confirmed_record
    from checkout.services.recovery import abandoned_carts_check
    from customers.models import CustomerUser

    post(client)
    stranger_posts({"full_name": "Mr Impostor", "email": "maria.lopez@example.com"})
    session = CheckoutSession.objects.get()
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    with django_capture_on_commit_callbacks(execute=True):
        assert len(abandoned_carts_check().reminded) == 1
    [reminder] = mail.outbox
    assert "Hi María," in reminder.body and "Impostor" not in reminder.body

    with django_capture_on_commit_callbacks(execute=True):
        payment_confirmed_record(confirmation=PaymentConfirmation(
            payment_id="pa_buyer0001", amount_cents=49500, currency="USD", checkout_id=session.recurrente_checkout_id,
        ))
    assert CustomerUser.objects.get(email="maria.lopez@example.com").full_name == "María López"


def test_a_checkout_url_outside_recurrente_is_refused(client, preview_site, recurrente_api):
    recurrente_api.add(responses_lib.POST, f"{API}/checkouts", status=201,
                       json={"id": "ch_evil", "checkout_url": "https://evil.example/phish"})
    response = post(client)
    assert response.status_code == 503  # the try-again page, never a redirect elsewhere
    session = CheckoutSession.objects.get()
    assert session.status == CheckoutSession.Status.INITIATED and "outside" in session.checkout_error


@pytest.mark.parametrize("name", ["Li", "Ó Sé", "王伟"])
def test_short_real_names_are_accepted(name):
    from checkout.forms import PurchaseForm

    form = PurchaseForm({"full_name": name, "email": "a@example.com"})
    assert form.is_valid(), form.errors
