import pytest
from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction

from customers.models import CustomerUser

pytestmark = pytest.mark.django_db


def test_email_is_normalised_and_unique_case_insensitively():
    CustomerUser.objects.create_user("A@x.com", "a-long-enough-password")
    assert CustomerUser.objects.get().email == "a@x.com"
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerUser.objects.create_user("a@x.com")


def test_database_refuses_case_variants_even_when_code_skips_normalisation():
    CustomerUser.objects.create(email="A@x.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerUser.objects.create(email="a@X.com")


def test_login_by_email_ignores_case(rf):
    CustomerUser.objects.create_user("maria@example.com", "a-long-enough-password")
    assert authenticate(rf.get("/"), username="MARIA@Example.com ", password="a-long-enough-password") is not None


def test_user_without_password_cannot_log_in(rf):
    user = CustomerUser.objects.create_user("nopass@example.com")
    assert not user.has_usable_password()
    assert authenticate(rf.get("/"), username="nopass@example.com", password="") is None


def test_seed_fields_exist_with_sensible_defaults():
    user = CustomerUser.objects.create_user("fields@example.com")
    assert (user.email_verified, user.email_verified_at, user.login_count, user.is_active, user.is_staff) == (
        False, None, 0, True, False,
    )
    assert user.created_at is not None and user.updated_at is not None


def test_superuser_is_staff():
    user = CustomerUser.objects.create_superuser("root@example.com", "a-long-enough-password")
    assert user.is_staff and user.is_superuser


def test_look_alike_letters_do_not_reach_another_account(rf):
    # PostgreSQL's case folding maps "ſ" to "S"; lookups use the exact normalised spelling instead.
    CustomerUser.objects.create_user("boss@example.com", "a-long-enough-password")
    assert authenticate(rf.get("/"), username="boſs@example.com", password="a-long-enough-password") is None
    assert authenticate(rf.get("/"), username=" BOSS@example.com", password="a-long-enough-password") is not None
