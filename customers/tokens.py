"""Emailed account links: single-use, never stored, each kind with its own salt and lifetime.

Every token is an HMAC over account state that the link's use changes, which is what makes it
single-use without writing anything to the database:
- set-your-password (72 hours) and password reset (1 hour, Django's own generator and
  PASSWORD_RESET_TIMEOUT): the password hash, replaced the moment a password is set;
- email verification (24 hours): `email_verified`, which the confirmation flips.
Distinct salts mean a token of one kind is never accepted as another.
"""

from django.contrib.auth.tokens import PasswordResetTokenGenerator, default_token_generator
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int

from .models import CustomerUser

SET_PASSWORD_TIMEOUT_SECONDS = 72 * 60 * 60
VERIFY_EMAIL_TIMEOUT_SECONDS = 24 * 60 * 60


class _TimeoutTokenGenerator(PasswordResetTokenGenerator):
    """Django's generator with a lifetime of its own instead of settings.PASSWORD_RESET_TIMEOUT."""

    timeout: int

    def check_token(self, user: CustomerUser | None, token: str | None) -> bool:
        if not (user and token) or not isinstance(token, str) or len(token) > 100:
            return False
        try:
            ts_b36, _ = token.split("-")
            ts = base36_to_int(ts_b36)
        except ValueError:
            return False
        for secret in [self.secret, *self.secret_fallbacks]:
            if constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token):
                break
        else:
            return False
        return (self._num_seconds(self._now()) - ts) <= self.timeout


class SetPasswordTokenGenerator(_TimeoutTokenGenerator):
    # A distinct salt: a reset token is never accepted as a set-password token, or vice versa.
    key_salt = "customers.tokens.SetPasswordTokenGenerator"
    timeout = SET_PASSWORD_TIMEOUT_SECONDS


class VerifyEmailTokenGenerator(_TimeoutTokenGenerator):
    key_salt = "customers.tokens.VerifyEmailTokenGenerator"
    timeout = VERIFY_EMAIL_TIMEOUT_SECONDS

    def _make_hash_value(self, user, timestamp):
        # Not the password: changing it must not spend a verification link. `email_verified`
        # makes the link single-use; the address makes it die if the account's email changes.
        return f"{user.pk}{user.email}{user.email_verified}{timestamp}"


set_password_token_generator = SetPasswordTokenGenerator()
verify_email_token_generator = VerifyEmailTokenGenerator()
# Password reset links are Django's: one hour (settings.PASSWORD_RESET_TIMEOUT).
password_reset_token_generator = default_token_generator
