import re

import pytest
from django.utils import timezone
from freezegun import freeze_time

from customers.tests.factories import CustomerFactory

PASSWORD = "a-very-good-password-1"  # the factory's password


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Argon2 (the production hasher) takes ~0.25 s per hash; these tests hash hundreds of times.
    test_login.py checks separately that production settings store Argon2 hashes."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def customer(db):
    return CustomerFactory(email="maria@example.com", full_name="María López")


@pytest.fixture
def customer_client(client, customer):
    client.force_login(customer)
    client.user = customer
    return client


@pytest.fixture
def frozen_clock():
    """Rate-limit windows are fixed slices of real time; freezing it keeps a test from straddling one."""
    with freeze_time(timezone.now(), tick=False) as frozen:
        yield frozen


CSRF_TOKEN = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')


def without_csrf(body: bytes) -> bytes:
    return CSRF_TOKEN.sub(b'name="csrfmiddlewaretoken" value=""', body)
