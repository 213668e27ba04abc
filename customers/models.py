from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower


def normalize_email_address(email: str) -> str:
    """One spelling per mailbox for lookups and uniqueness: trimmed and lower-cased."""
    return (email or "").strip().lower()


class CustomerUserManager(BaseUserManager["CustomerUser"]):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        # Exact match on the stored (normalised) spelling: a case-insensitive SQL match would also
        # fold look-alikes such as "ſ" into "s" and let them dodge per-email rate limits.
        return self.get(email=normalize_email_address(username))

    def create_user(self, email: str, password: str | None = None, **extra_fields: Any) -> "CustomerUser":
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=normalize_email_address(email), **extra_fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra_fields: Any) -> "CustomerUser":
        extra_fields.update(is_staff=True, is_superuser=True, email_verified=True)
        return self.create_user(email, password, **extra_fields)


class CustomerUser(AbstractBaseUser, PermissionsMixin):
    """A business owner (or a staff member, with is_staff). Logs in with email."""

    email = models.EmailField(max_length=254, unique=True)
    full_name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    email_verified = models.BooleanField(default=False)
    email_verified_at = models.DateTimeField(null=True, blank=True)
    login_count = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    recurrente_customer_id = models.CharField(max_length=64, blank=True, help_text="Recurrente's us_… id, when known")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerUserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []

    class Meta:
        verbose_name = "customer"
        verbose_name_plural = "customers"
        constraints = [
            # `email` is stored normalised, but the database enforces case-insensitive uniqueness too.
            models.UniqueConstraint(Lower("email"), name="customer_email_ci_unique"),
        ]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = normalize_email_address(self.email)

    def get_full_name(self):
        return self.full_name or self.email

    def get_short_name(self):
        return (self.full_name or self.email).split(" ")[0]
