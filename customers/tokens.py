"""Set-your-password links: single-use, never stored, valid for longer than reset links.

The token is an HMAC over the account's password hash (random and unusable for a new account,
replaced the moment a password is set, which is what makes the link single-use), last login and
email. Nothing is written to the database.
"""

from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int

SET_PASSWORD_TIMEOUT_SECONDS = 72 * 60 * 60


class SetPasswordTokenGenerator(PasswordResetTokenGenerator):
    # A distinct salt: a reset token is never accepted as a set-password token, or vice versa.
    key_salt = "customers.tokens.SetPasswordTokenGenerator"
    timeout = SET_PASSWORD_TIMEOUT_SECONDS

    def check_token(self, user, token):
        # Django's check_token reads settings.PASSWORD_RESET_TIMEOUT (1 hour); welcome links last 72.
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


set_password_token_generator = SetPasswordTokenGenerator()
