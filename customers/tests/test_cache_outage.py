"""Sign-in and account endpoints while the rate-limit cache (Redis) is down: they fail closed with
a 503 page, never a 500, and do nothing (webmagic/ratelimit.py). Error mails to ADMINS would land
in mail.outbox (ADMINS is set for tests and DEBUG is off): there must be none."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from customers.models import CustomerUser
from customers.tests.conftest import PASSWORD
from customers.tests.factories import CustomerFactory
from webmagic.models import EmailLog
from webmagic.tests.outage import cache_unreachable

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-password-7"


@pytest.fixture
def cache_down(settings):
    cache_unreachable(settings)


def assert_cache_down_page(response, says: str):
    body = response.content.decode()
    assert response.status_code == 503 and response["Retry-After"] == "120"
    assert f"We can't {says} right now" in body and "try again in a few minutes" in body
    assert "Server Error" not in body and "Traceback" not in body
    assert f'<a class="button" href="{response.wsgi_request.path}">Try again</a>' in body  # back to the form


def test_portal_login_answers_503_and_signs_nobody_in(client, customer, cache_down, caplog):
    assert client.get("/portal/login/").status_code == 200  # GETs are not counted: the form still shows
    with caplog.at_level(logging.WARNING, logger="webmagic.ratelimit"):
        response = client.post("/portal/login/", {"username": customer.email, "password": PASSWORD})
    assert_cache_down_page(response, "sign you in")
    assert "_auth_user_id" not in client.session
    customer.refresh_from_db()
    assert customer.login_count == 0 and customer.last_login is None
    assert "cannot count (ConnectionError): answering 503" in caplog.text
    assert mail.outbox == []


def test_admin_login_answers_503_and_signs_nobody_in(client, cache_down):
    staff = get_user_model().objects.create_superuser("boss@webmagic.test", "correct horse battery staple")
    response = client.post("/admin/login/", {"username": staff.email, "password": "correct horse battery staple"})
    assert_cache_down_page(response, "sign you in")
    assert "_auth_user_id" not in client.session
    assert get_user_model().objects.get(pk=staff.pk).last_login is None
    assert mail.outbox == []


def test_password_reset_answers_503_and_queues_nothing(client, customer, cache_down, django_capture_on_commit_callbacks):
    assert client.get("/portal/password-reset/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/portal/password-reset/", {"email": customer.email})
    assert_cache_down_page(response, "send you a reset link")
    assert callbacks == [] and EmailLog.objects.count() == 0 and mail.outbox == []


def test_verification_resend_answers_503_and_sends_nothing(client, cache_down, django_capture_on_commit_callbacks):
    unverified = CustomerFactory(email="new@example.com", email_verified=False)
    client.force_login(unverified)  # sessions live in the database, not the cache
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/portal/verify-email/resend/")
    assert_cache_down_page(response, "send you a new confirmation link")
    assert callbacks == [] and EmailLog.objects.count() == 0 and mail.outbox == []


def test_password_change_answers_503_and_changes_nothing_but_profile_saves_still_work(customer_client, customer, cache_down):
    response = customer_client.post("/portal/account/", {
        "action": "password", "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
    })
    assert_cache_down_page(response, "change your password")
    assert CustomerUser.objects.get(pk=customer.pk).check_password(PASSWORD)
    # Saving one's name is not limited, so it never needed the cache.
    saved = customer_client.post("/portal/account/", {"action": "profile", "full_name": "María L.", "phone": ""})
    assert saved.status_code == 302 and CustomerUser.objects.get(pk=customer.pk).full_name == "María L."
    assert mail.outbox == []


def test_when_the_cache_is_back_sign_in_works_and_counts_again(client, customer, settings, cache_down):
    assert client.post("/portal/login/", {"username": customer.email, "password": PASSWORD}).status_code == 503
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "back"}}
    response = client.post("/portal/login/", {"username": customer.email, "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(customer.pk)
