import pytest
from django.utils import timezone

from checkout.models import CheckoutSession
from checkout.tests.factories import CheckoutSessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(preview_site):
    return CheckoutSessionFactory(site=preview_site, customer_email="maria.lopez@example.com", customer_name="María López")


def page(client, session_id):
    return client.get(f"/checkout/success/?session={session_id}")


def test_before_the_webhook_it_says_confirming_and_never_redirects(client, session):
    response = page(client, session.pk)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Confirming your payment" in body
    assert "Location" not in response.headers
    assert 'http-equiv="refresh"' not in body.lower()
    assert "LA Plumbing Pros" in body and "$495" in body
    assert 'href="/sites/la-plumbing-pros/"' in body
    assert "Go to your dashboard" in body
    assert "checkout-status.js" in body
    assert client.get(f"/checkout/success/status/?session={session.pk}").json() == {"state": "confirming"}


def test_after_the_webhook_it_confirms_with_next_steps(client, session):
    from customers.tests.factories import CustomerFactory

    CheckoutSession.objects.filter(pk=session.pk).update(
        status=CheckoutSession.Status.COMPLETED, completed_at=timezone.now(), user=CustomerFactory()
    )
    body = page(client, session.pk).content.decode()
    assert "LA Plumbing Pros is yours!" in body and "Confirming" not in body
    assert "set your password" in body.lower() and "Activate hosting" in body
    assert client.get(f"/checkout/success/status/?session={session.pk}").json() == {"state": "confirmed"}


def test_a_buyer_who_lost_the_race_for_the_site_is_told_about_the_refund(client, session):
    # Fulfilment flags such a payment for refund and completes the session without an owner link.
    CheckoutSession.objects.filter(pk=session.pk).update(status=CheckoutSession.Status.COMPLETED, completed_at=timezone.now())
    body = page(client, session.pk).content.decode()
    assert "just sold to someone else" in body and "started a full refund" in body
    assert "is yours" not in body and "Go to your dashboard" not in body
    assert client.get(f"/checkout/success/status/?session={session.pk}").json() == {"state": "refund"}


def test_a_payment_with_the_wrong_amount_is_under_review(client, session):
    from checkout.models import Payment
    from checkout.tests.factories import PaymentFactory

    PaymentFactory(site=session.site, checkout_session=session, flag=Payment.Flag.AMOUNT_MISMATCH)
    assert "checking your payment" in page(client, session.pk).content.decode()
    assert client.get(f"/checkout/success/status/?session={session.pk}").json() == {"state": "review"}


def test_bank_transfer_in_progress(client, session):
    CheckoutSession.objects.filter(pk=session.pk).update(payment_in_progress_at=timezone.now())
    assert "waiting for your bank transfer" in page(client, session.pk).content.decode()
    assert client.get(f"/checkout/success/status/?session={session.pk}").json() == {"state": "in_progress"}


def test_it_reveals_no_more_than_a_masked_email(client, session):
    body = page(client, session.pk).content.decode()
    assert "maria.lopez@example.com" not in body
    assert "m•••@example.com" in body


@pytest.mark.parametrize("raw", ["", "not-a-uuid", "1", "../../etc", "3f2b8c1e-0000-4000-8000-000000000000", "' OR 1=1 --"])
def test_unknown_or_malformed_ids_are_404(client, db, raw):
    assert page(client, raw).status_code == 404
    assert client.get(f"/checkout/success/status/?session={raw}").status_code == 404


def test_missing_parameter_is_404(client, db):
    assert client.get("/checkout/success/").status_code == 404


def test_subscription_sessions_are_not_shown_here(client, session):
    CheckoutSession.objects.filter(pk=session.pk).update(kind=CheckoutSession.Kind.SUBSCRIPTION)
    assert page(client, session.pk).status_code == 404


def test_success_page_is_get_only(client, session):
    assert client.post(f"/checkout/success/?session={session.pk}").status_code == 405


def test_success_page_query_count_is_fixed(client, session, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        page(client, session.pk)
