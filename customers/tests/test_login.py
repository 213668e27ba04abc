import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from customers.models import CustomerUser
from customers.ratelimits import LOGIN_EMAIL_RATES, LOGIN_IP_RATES
from customers.tests.conftest import PASSWORD, without_csrf
from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

LOGIN = "/portal/login/"


def per_minute(rates) -> int:
    return int(next(rate for rate in rates if rate.endswith("/m")).split("/")[0])


def test_login_page_renders_an_email_form(client):
    page = client.get(LOGIN)
    body = page.content.decode()
    assert page.status_code == 200
    assert 'type="email"' in body and 'name="username"' in body and 'autocomplete="current-password"' in body
    assert "/portal/password-reset/" in body


def test_signing_in_counts_the_login_stamps_last_login_and_rotates_the_session(client, customer):
    # An attacker plants a session id in the victim's browser before sign-in (session fixation).
    planted = client.session
    planted["planted"] = True
    planted.save()
    planted_key = planted.session_key
    client.cookies["sessionid"] = planted_key

    response = client.post(LOGIN, {"username": " MARIA@example.com ", "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == "/portal/"
    new_key = client.cookies["sessionid"].value
    assert new_key != planted_key
    assert not SessionStore().exists(planted_key)  # the planted id now opens nothing
    assert client.session["_auth_user_id"] == str(customer.pk)
    user = CustomerUser.objects.get(pk=customer.pk)
    assert user.login_count == 1 and user.last_login is not None
    client.post("/portal/logout/")
    client.post(LOGIN, {"username": "maria@example.com", "password": PASSWORD})
    assert CustomerUser.objects.get(pk=customer.pk).login_count == 2


def test_production_settings_store_argon2_hashes(settings, customer):
    from webmagic import settings as project_settings

    settings.PASSWORD_HASHERS = project_settings.PASSWORD_HASHERS
    customer.set_password("another-good-password-9")
    assert customer.password.startswith("argon2")


def _failed_login(client, username, password="not-the-password-1"):
    response = client.post(LOGIN, {"username": username, "password": password})
    return response.status_code, without_csrf(response.content).replace(username.encode(), b"EMAIL")


def test_wrong_password_unknown_email_and_no_password_account_get_the_same_answer(client, customer):
    CustomerUser.objects.create_user("nopassword@example.com")  # bought a site, never set a password
    CustomerFactory(email="inactive@example.com", is_active=False)
    wrong_password = _failed_login(client, "maria@example.com")
    unknown = _failed_login(client, "nobody@example.com")
    no_password = _failed_login(client, "nopassword@example.com", password="")
    no_password_guess = _failed_login(client, "nopassword@example.com")
    inactive = _failed_login(client, "inactive@example.com", password=PASSWORD)

    assert wrong_password[0] == 400
    assert wrong_password == unknown == no_password_guess == inactive
    assert b"match an account" in wrong_password[1]
    assert no_password[0] == 400  # empty password: a required-field error, the same for everyone
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("next_url, expected", [
    ("/portal/account/", "/portal/account/"),
    ("/portal/sites/x/?a=1", "/portal/sites/x/?a=1"),
    ("https://evil.example/", "/portal/"),
    ("//evil.example/", "/portal/"),
    ("/\\evil.example/", "/portal/"),
    ("http://testserver/portal/account/", "/portal/"),  # absolute, even to us: not needed, not taken
    ("javascript:alert(1)", "/portal/"),
    ("portal/account/", "/portal/"),
    ("/portal/login/", "/portal/"),
])
def test_next_only_leads_to_our_own_pages(client, customer, next_url, expected):
    response = client.post(f"{LOGIN}?next={next_url}", {"username": customer.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == expected


def test_next_survives_the_form_and_a_failed_attempt(client, customer):
    page = client.get(f"{LOGIN}?next=/portal/account/")
    assert 'name="next" value="/portal/account/"' in page.content.decode()
    client.post(LOGIN, {"username": customer.email, "password": "wrong-one-123", "next": "/portal/account/"})
    response = client.post(LOGIN, {"username": customer.email, "password": PASSWORD, "next": "/portal/account/"})
    assert response["Location"] == "/portal/account/"


def test_portal_pages_send_anonymous_visitors_to_login_and_back(client, customer):
    response = client.get("/portal/account/")
    assert response.status_code == 302 and response["Location"] == "/portal/login/?next=/portal/account/"


def test_a_signed_in_visitor_is_sent_on_from_the_login_page(customer_client):
    response = customer_client.get(LOGIN)
    assert response.status_code == 302 and response["Location"] == "/portal/"


def test_logout_is_post_only(customer_client):
    assert customer_client.get("/portal/logout/").status_code == 405
    assert customer_client.get("/portal/").status_code == 200
    response = customer_client.post("/portal/logout/")
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert customer_client.get("/portal/").status_code == 302


def test_login_form_needs_its_csrf_token(customer):
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(LOGIN, {"username": customer.email, "password": PASSWORD}).status_code == 403


# --- Rate limits ---------------------------------------------------------------------------------

def _login(client, email, ip, password="wrong-password-123"):
    return client.post(LOGIN, {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_login_is_limited_per_email_whatever_the_ip_or_spelling(client, customer, frozen_clock):
    limit = per_minute(LOGIN_EMAIL_RATES)
    for n in range(limit):
        assert _login(client, "maria@example.com", f"10.0.0.{n + 1}").status_code == 400
    blocked = _login(client, " Maria@Example.COM", "10.0.1.1", password=PASSWORD)  # even the right password
    assert blocked.status_code == 429
    assert "Too many tries" in blocked.content.decode() and "try again" in blocked.content.decode()
    assert "_auth_user_id" not in client.session
    # Another address from the same IPs is unaffected.
    assert _login(client, "other@example.com", "10.0.0.1").status_code == 400


def test_login_is_limited_per_ip(client, customer, frozen_clock):
    limit = per_minute(LOGIN_IP_RATES)
    for n in range(limit):
        assert _login(client, f"guess{n}@example.com", "10.9.9.9").status_code == 400
    assert _login(client, customer.email, "10.9.9.9", password=PASSWORD).status_code == 429
    # Another IP signs in normally.
    assert _login(client, customer.email, "10.9.9.10", password=PASSWORD).status_code == 302


def test_the_ip_comes_from_the_trusted_proxy_not_a_forged_header(client, customer, frozen_clock, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    limit = per_minute(LOGIN_IP_RATES)
    for n in range(limit):
        # A client rotating the leftmost X-Forwarded-For value is still one client to us.
        client.post(LOGIN, {"username": f"g{n}@example.com", "password": "x-wrong-pass"},
                    HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.7", REMOTE_ADDR="10.0.0.1")
    response = client.post(LOGIN, {"username": "z@example.com", "password": "x-wrong-pass"},
                           HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7", REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 429


def test_only_posts_count(client, frozen_clock):
    for _ in range(per_minute(LOGIN_IP_RATES) + 5):
        assert client.get(LOGIN, REMOTE_ADDR="10.1.1.1").status_code == 200


def test_admin_login_is_limited_too_and_shares_the_portal_counters(client, frozen_clock):
    staff = get_user_model().objects.create_superuser("boss@webmagic.test", "correct horse battery staple")
    limit = per_minute(LOGIN_EMAIL_RATES)
    for n in range(limit - 1):
        response = client.post("/admin/login/", {"username": staff.email, "password": "nope"}, REMOTE_ADDR=f"10.2.0.{n}")
        assert response.status_code == 200  # the admin's own "please enter the correct email" page
    assert _login(client, staff.email, "10.2.1.1").status_code == 400  # the portal form counts too
    blocked = client.post(
        "/admin/login/", {"username": staff.email, "password": "correct horse battery staple"}, REMOTE_ADDR="10.2.1.2"
    )
    assert blocked.status_code == 429 and "Too many tries" in blocked.content.decode()
    ok = client.post("/admin/login/", {"username": "other@webmagic.test", "password": "nope"}, REMOTE_ADDR="10.2.1.3")
    assert ok.status_code == 200


def test_admin_login_still_signs_staff_in(client):
    get_user_model().objects.create_superuser("boss@webmagic.test", "correct horse battery staple")
    response = client.post("/admin/login/?next=/admin/", {"username": "boss@webmagic.test", "password": "correct horse battery staple"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
