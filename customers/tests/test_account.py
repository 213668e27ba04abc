import pytest
from django.test import Client

from customers.models import CustomerUser
from customers.ratelimits import PASSWORD_CHANGE_RATE
from customers.tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ACCOUNT = "/portal/account/"
NEW_PASSWORD = "a-brand-new-password-7"


def test_the_account_page_shows_the_email_read_only_and_both_forms(customer_client):
    body = customer_client.get(ACCOUNT).content.decode()
    assert "maria@example.com" in body and 'name="email"' not in body
    assert 'name="full_name"' in body and 'value="María López"' in body and 'name="phone"' in body
    assert 'name="old_password"' in body and 'name="new_password1"' in body


def test_name_and_phone_are_saved(customer_client, customer):
    response = customer_client.post(ACCOUNT, {"action": "profile", "full_name": "  María L. ", "phone": "+502 5555-1234"})
    assert response.status_code == 302 and response["Location"] == ACCOUNT
    customer.refresh_from_db()
    assert (customer.full_name, customer.phone) == ("María L.", "+502 5555-1234")
    assert "Your details are saved." in customer_client.get(ACCOUNT).content.decode()


@pytest.mark.parametrize("data, error", [
    ({"full_name": "", "phone": ""}, "This field is required."),
    ({"full_name": "x" * 201, "phone": ""}, "at most 200 characters"),
    ({"full_name": "Ana", "phone": "1" * 41}, "at most 40 characters"),
    ({"full_name": "Ana", "phone": "<script>"}, "Use digits, spaces"),
])
def test_bad_details_are_refused_with_the_values_kept(customer_client, customer, data, error):
    response = customer_client.post(ACCOUNT, {"action": "profile", **data})
    assert response.status_code == 400 and error in response.content.decode()
    if data["full_name"] == "Ana":
        assert 'value="Ana"' in response.content.decode()
    customer.refresh_from_db()
    assert customer.full_name == "María López" and customer.phone == ""


def test_changing_the_password_keeps_this_session_and_ends_the_others(customer_client, customer):
    elsewhere = Client()
    elsewhere.force_login(customer)
    key_before = customer_client.session.session_key
    response = customer_client.post(
        ACCOUNT, {"action": "password", "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert CustomerUser.objects.get(pk=customer.pk).check_password(NEW_PASSWORD)
    assert customer_client.get("/portal/").status_code == 200
    assert customer_client.session.session_key != key_before
    assert elsewhere.get("/portal/").status_code == 302


def test_the_current_password_is_required(customer_client, customer):
    response = customer_client.post(
        ACCOUNT, {"action": "password", "old_password": "wrong-old-pass", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 400 and "old password was entered incorrectly" in response.content.decode()
    assert CustomerUser.objects.get(pk=customer.pk).check_password(PASSWORD)


def test_password_guesses_are_limited_but_profile_saves_are_not(customer_client, frozen_clock):
    limit = int(PASSWORD_CHANGE_RATE.split("/")[0])
    for _ in range(limit + 3):
        assert customer_client.post(ACCOUNT, {"action": "profile", "full_name": "Ana", "phone": ""}).status_code == 302
    guess = {"action": "password", "old_password": "guess-123456", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    for _ in range(limit):
        assert customer_client.post(ACCOUNT, guess).status_code == 400
    assert customer_client.post(ACCOUNT, guess).status_code == 429
