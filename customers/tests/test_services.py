import pytest

from customers.models import CustomerUser
from customers.services import customer_get_or_create_for_purchase
from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_a_new_email_creates_an_account_without_a_usable_password():
    user, created = customer_get_or_create_for_purchase(
        email="  New.Buyer@Example.com ", full_name="New Buyer", recurrente_customer_id="us_1"
    )
    assert created
    assert user.email == "new.buyer@example.com" and user.full_name == "New Buyer" and user.recurrente_customer_id == "us_1"
    assert not user.has_usable_password() and not user.email_verified


def test_a_known_email_in_another_case_finds_the_same_account():
    existing = CustomerFactory(email="known@example.com", full_name="")
    user, created = customer_get_or_create_for_purchase(email="KNOWN@example.COM", full_name="Known Person")
    assert not created and user.pk == existing.pk
    assert CustomerUser.objects.count() == 1
    assert CustomerUser.objects.get(pk=existing.pk).full_name == "Known Person"  # filled, never overwritten


def test_losing_the_creation_race_returns_the_winners_account(monkeypatch):
    winner = CustomerFactory(email="race@example.com")
    # Simulate the read happening before the other worker's commit: the first lookup misses.
    real_filter = CustomerUser.objects.filter
    calls = {"n": 0}

    def first_lookup_misses(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_filter(pk=-1)
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(CustomerUser.objects, "filter", first_lookup_misses)
    user, created = customer_get_or_create_for_purchase(email="race@example.com")
    assert not created and user.pk == winner.pk


def test_an_empty_email_is_refused():
    with pytest.raises(ValueError):
        customer_get_or_create_for_purchase(email="  ")
