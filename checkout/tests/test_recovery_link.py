"""The reminder's links: the discounted recovery checkout and the unsubscribe page."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import responses as responses_lib
from django.core import mail, signing
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from checkout import selectors
from checkout.ledger import PaymentConfirmation
from checkout.models import CheckoutSession
from checkout.services import recovery
from checkout.services.confirmations import payment_confirmed_record
from checkout.tasks import check_abandoned_carts
from checkout.tests.conftest import API
from checkout.tests.factories import CheckoutSessionFactory
from customers.tests.factories import CustomerFactory
from sites.models import Site
from webmagic.models import EmailSuppression

pytestmark = pytest.mark.django_db


def reminded_session(site, *, email="maria@example.com", name="María López", reminded_at=None, **kwargs) -> CheckoutSession:
    reminded_at = reminded_at or timezone.now() - timedelta(hours=1)
    session = CheckoutSessionFactory(
        site=site, customer_email=email, customer_name=name, status=CheckoutSession.Status.ABANDONED,
        reminder_sent_at=reminded_at, abandoned_at=reminded_at, recovery_code="SAVE10-ABCDEFGHJK", **kwargs,
    )
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=reminded_at - timedelta(minutes=16))
    return session


def recover_url(session) -> str:
    return f"/checkout/recover/{recovery.recovery_token_make(session_id=session.pk)}/"


def checkout_posts(mock) -> list[dict]:
    return [json.loads(c.request.body) for c in mock.calls if c.request.method == "POST" and c.request.url.endswith("/checkouts")]


# --- Recovery link ------------------------------------------------------------------------------

def test_a_valid_link_creates_a_discounted_checkout_linked_to_the_original(client, preview_site, checkout_created):
    original = reminded_session(preview_site)
    response = client.get(recover_url(original), REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Mail app")
    assert response.status_code == 303
    assert response["Location"] == "https://app.recurrente.com/checkout-session/ch_created0001"
    child = CheckoutSession.objects.get(recovered_from=original)
    assert child.status == CheckoutSession.Status.CHECKOUT_CREATED and child.checkout_url == response["Location"]
    assert child.discount_percent == 10 and child.amount == Decimal("445.50")
    assert (child.customer_name, child.customer_email, child.kind) == ("María López", "maria@example.com", "purchase")
    assert child.ip_address == "203.0.113.9" and child.user_agent == "Mail app"
    [sent] = checkout_posts(checkout_created)
    item = sent["items"][0]
    assert item["amount_in_cents"] == 44550 and item["charge_type"] == "one_time" and item["currency"] == "USD"
    assert "SAVE10-ABCDEFGHJK" in item["name"] and "10% off" in item["name"]
    assert sent["metadata"]["checkout_session_id"] == str(child.pk)
    assert sent["metadata"]["recovered_from_session_id"] == str(original.pk)
    assert all(isinstance(v, str) for v in sent["metadata"].values())
    assert sent["success_url"] == f"http://testserver/checkout/success/?session={child.pk}"
    original.refresh_from_db()
    assert original.status == CheckoutSession.Status.ABANDONED  # the original is left as it was


def test_clicking_again_reuses_the_open_discounted_checkout(client, preview_site, checkout_created):
    original = reminded_session(preview_site)
    first = client.get(recover_url(original))
    # Even after the scan closed the discounted attempt as a silent sibling, it is still payable.
    CheckoutSession.objects.filter(recovered_from=original).update(status=CheckoutSession.Status.ABANDONED)
    second = client.get(recover_url(original))
    assert first["Location"] == second["Location"]
    assert len(checkout_posts(checkout_created)) == 1 and CheckoutSession.objects.filter(recovered_from=original).count() == 1


def test_a_click_after_the_discounted_checkout_lapsed_makes_a_new_one(client, preview_site, checkout_created):
    original = reminded_session(preview_site, reminded_at=timezone.now() - timedelta(hours=30))
    client.get(recover_url(original))
    CheckoutSession.objects.filter(recovered_from=original).update(created_at=timezone.now() - timedelta(hours=25))
    response = client.get(recover_url(original))
    assert response.status_code == 303 and response["Location"].endswith("ch_created0002")
    assert CheckoutSession.objects.filter(recovered_from=original).count() == 2


def test_after_the_window_the_link_offers_the_full_price_with_a_note(client, preview_site, checkout_created):
    with freeze_time("2026-11-20 10:00:00"):
        original = reminded_session(preview_site, reminded_at=timezone.now())
    with freeze_time("2026-11-22 09:59:59"):
        assert client.get(recover_url(original)).status_code == 303  # still inside the 48 hours
    CheckoutSession.objects.filter(recovered_from=original).delete()
    with freeze_time("2026-11-22 10:00:00"):
        response = client.get(recover_url(original))
    assert response.status_code == 200
    body = response.content.decode()
    assert "offer ended on November 22, 2026, 4:00 AM CST" in body  # customers' local time, zone named
    assert "$495" in body and "$445.50" not in body
    assert 'action="/sites/la-plumbing-pros/purchase/"' in body  # the regular purchase form…
    assert 'value="María López"' in body and 'value="maria@example.com"' in body  # …already filled in
    assert len(checkout_posts(checkout_created)) == 1 and not CheckoutSession.objects.filter(recovered_from=original).exists()


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
    lambda t: ("1" if t[0] == "0" else "0") + t[1:],  # session id changed
    lambda t: t.split(":")[0],  # no signature
    lambda t: "garbage",
])
def test_a_tampered_link_is_404(client, preview_site, checkout_created, mangle):
    original = reminded_session(preview_site)
    token = recovery.recovery_token_make(session_id=original.pk)
    assert client.get(f"/checkout/recover/{mangle(token)}/").status_code == 404
    assert checkout_posts(checkout_created) == []


def test_tokens_for_other_purposes_or_unreminded_sessions_are_404(client, preview_site, checkout_created):
    original = reminded_session(preview_site)
    unsubscribe_token = recovery.unsubscribe_token_make(session_id=original.pk)
    assert client.get(f"/checkout/recover/{unsubscribe_token}/").status_code == 404
    never_reminded = CheckoutSessionFactory(site=preview_site)
    assert client.get(recover_url(never_reminded)).status_code == 404
    forged = signing.Signer(salt="something-else").sign(original.pk.hex)
    assert client.get(f"/checkout/recover/{forged}/").status_code == 404


def test_a_sold_site_shows_a_clear_message(client, preview_site, checkout_created):
    original = reminded_session(preview_site)
    Site.objects.filter(pk=preview_site.pk).update(status=Site.Status.OWNED, owner=CustomerFactory(email="other@example.com"))
    response = client.get(recover_url(original))
    assert response.status_code == 409
    body = response.content.decode()
    assert "was just sold to someone else" in body and "You have not been charged" in body
    assert checkout_posts(checkout_created) == []


def test_a_site_bought_by_the_same_person_says_it_is_theirs(client, preview_site, checkout_created):
    original = reminded_session(preview_site)
    Site.objects.filter(pk=preview_site.pk).update(status=Site.Status.OWNED, owner=CustomerFactory(email="maria@example.com"))
    response = client.get(recover_url(original))
    assert response.status_code == 200 and "already yours" in response.content.decode()


def test_recurrente_failing_shows_try_again_and_the_retry_reuses_the_session(client, preview_site, recurrente_api):
    original = reminded_session(preview_site)
    recurrente_api.add(responses_lib.POST, f"{API}/checkouts", json={"message": "down"}, status=503)
    response = client.get(recover_url(original))
    assert response.status_code == 503
    body = response.content.decode()
    assert "try again" in body.lower() and f'href="{recover_url(original)}"' in body
    child = CheckoutSession.objects.get(recovered_from=original)
    assert child.status == CheckoutSession.Status.INITIATED and "RecurrenteUnavailable" in child.checkout_error
    later = {"id": "ch_later1", "checkout_url": "https://app.recurrente.com/checkout-session/ch_later1"}
    recurrente_api.replace(responses_lib.POST, f"{API}/checkouts", json=later, status=201)
    response = client.get(recover_url(original))
    assert response.status_code == 303 and response["Location"] == "https://app.recurrente.com/checkout-session/ch_later1"
    assert CheckoutSession.objects.filter(recovered_from=original).get().pk == child.pk


def test_paying_the_discounted_checkout_completes_it_and_counts_as_recovered(
    client, preview_site, checkout_created, django_capture_on_commit_callbacks
):
    original = reminded_session(preview_site)
    client.get(recover_url(original))
    child = CheckoutSession.objects.get(recovered_from=original)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = payment_confirmed_record(confirmation=PaymentConfirmation(
            payment_id="pa_disc1", amount_cents=44550, currency="USD", checkout_id=child.recurrente_checkout_id,
        ))
    assert outcome == "fulfilled"  # the discounted amount is what we asked for, so it is not a mismatch
    child.refresh_from_db(), preview_site.refresh_from_db()
    assert child.status == CheckoutSession.Status.COMPLETED and preview_site.status == Site.Status.OWNED
    assert child in CheckoutSession.objects.filter(selectors.recovered_q())
    # The link now says the site is theirs instead of selling it again.
    assert "already yours" in client.get(recover_url(original)).content.decode()


def test_the_link_in_the_real_email_works(client, preview_site, checkout_created, django_capture_on_commit_callbacks):
    session = CheckoutSessionFactory(site=preview_site)
    CheckoutSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    checkout_created.add(responses_lib.GET, f"{API}/checkouts/{session.recurrente_checkout_id}", json={"status": "unpaid"})
    with django_capture_on_commit_callbacks(execute=True):
        check_abandoned_carts()
    [link] = [w for w in mail.outbox[0].body.split() if "/checkout/recover/" in w]
    response = client.get(link.removeprefix("http://testserver"))
    assert response.status_code == 303
    assert CheckoutSession.objects.get(recovered_from=session).amount == Decimal("445.50")


# --- Unsubscribe --------------------------------------------------------------------------------

def unsubscribe_url(session) -> str:
    return f"/checkout/unsubscribe/{recovery.unsubscribe_token_make(session_id=session.pk)}/"


def test_get_asks_for_confirmation_and_changes_nothing(client, preview_site):
    session = reminded_session(preview_site)
    response = client.get(unsubscribe_url(session))
    body = response.content.decode()
    assert response.status_code == 200 and '<form method="post"' in body and "m•••@example.com" in body
    assert "maria@example.com" not in body
    assert not EmailSuppression.objects.exists()


def test_the_confirm_button_unsubscribes(client, preview_site):
    session = reminded_session(preview_site)
    response = client.post(unsubscribe_url(session))
    assert response.status_code == 200 and "unsubscribed" in response.content.decode()
    suppression = EmailSuppression.objects.get()
    assert (suppression.email, suppression.source) == ("maria@example.com", EmailSuppression.Source.LINK)


def test_one_click_post_from_a_mail_client_works_without_csrf_and_is_idempotent(preview_site):
    session = reminded_session(preview_site, email="Maria@Example.com")
    mail_client = Client(enforce_csrf_checks=True)
    for _ in range(2):
        response = mail_client.post(unsubscribe_url(session), "List-Unsubscribe=One-Click",
                                    content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
    suppression = EmailSuppression.objects.get()
    assert (suppression.email, suppression.source) == ("maria@example.com", EmailSuppression.Source.ONE_CLICK)


def test_a_tampered_unsubscribe_link_is_404(client, preview_site):
    session = reminded_session(preview_site)
    token = recovery.unsubscribe_token_make(session_id=session.pk)
    assert client.get(f"/checkout/unsubscribe/{token[:-2]}xx/").status_code == 404
    assert client.post(f"/checkout/unsubscribe/{recovery.recovery_token_make(session_id=session.pk)}/").status_code == 404
    assert not EmailSuppression.objects.exists()


def test_a_genuine_link_whose_address_was_removed_answers_expired_in_a_fixed_number_of_queries(
    client, preview_site, django_assert_max_num_queries,
):
    # The 90-day cleanup removed the buyer and scrubbed the reminder (checkout/tests/test_recovery_cleanup.py).
    session = reminded_session(preview_site)
    CheckoutSession.objects.filter(pk=session.pk).update(customer_name="", customer_email="")
    for method in (client.get, client.post):
        with django_assert_max_num_queries(2):
            response = method(unsubscribe_url(session))
        assert response.status_code == 410 and "This unsubscribe link has expired" in response.content.decode()
    assert not EmailSuppression.objects.exists()
    # A tampered link is still a plain 404, not the expired page.
    assert client.get(unsubscribe_url(session)[:-3] + "xx/").status_code == 404


def test_an_unsubscribed_address_gets_no_reminder_for_any_site(client, preview_site, django_capture_on_commit_callbacks):
    client.post(unsubscribe_url(reminded_session(preview_site)))
    other = CheckoutSessionFactory(customer_email="maria@example.com")
    CheckoutSession.objects.filter(pk=other.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    with django_capture_on_commit_callbacks(execute=True):
        check_abandoned_carts()
    assert mail.outbox == []
    other.refresh_from_db()
    assert other.reminder_sent_at is None and other.status == CheckoutSession.Status.ABANDONED


def test_the_pages_run_a_fixed_number_of_queries(client, preview_site, checkout_created, django_assert_max_num_queries):
    original = reminded_session(preview_site)
    for _ in range(3):  # more rows of the same person must not mean more queries
        reminded_session(preview_site)
    client.get(recover_url(original))  # creates the discounted checkout
    # 9: the browser's session is read, to remember the checkout it reused (success-page password).
    with django_assert_max_num_queries(9):
        assert client.get(recover_url(original)).status_code == 303  # reuse
    with django_assert_max_num_queries(3):
        assert client.get(unsubscribe_url(original)).status_code == 200
    with django_assert_max_num_queries(6):
        assert client.post(unsubscribe_url(original)).status_code == 200
