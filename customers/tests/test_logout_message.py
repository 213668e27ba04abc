"""After signing out, the sign-in page says so (issue 16, part 6), once."""

import pytest

pytestmark = pytest.mark.django_db


def test_signing_out_lands_on_the_sign_in_page_saying_so_once(customer_client):
    response = customer_client.post("/portal/logout/", follow=True)
    assert response.redirect_chain == [("/portal/login/", 302)]
    body = response.content.decode()
    assert "You are signed out." in body and "Sign in" in body
    assert "You are signed out." not in customer_client.get("/portal/login/").content.decode()
    assert customer_client.get("/portal/").status_code == 302  # and really signed out


def test_the_sign_in_page_does_not_say_it_to_someone_who_never_signed_in(client):
    assert "You are signed out." not in client.get("/portal/login/").content.decode()
