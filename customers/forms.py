from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, PasswordResetForm, SetPasswordForm
from django.core.validators import RegexValidator

from . import services


class ChoosePasswordForm(SetPasswordForm):
    """Django's set-password form (its validators, two matching fields), saved through a service."""

    new_password1 = forms.CharField(
        label="New password", strip=False, max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
        help_text="At least 10 characters; not a common password and not only numbers.",
    )
    new_password2 = forms.CharField(
        label="Repeat the password", strip=False, max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def save(self, commit=True):
        raise NotImplementedError("use customers.services.customer_password_set_from_link")


class EmailLoginForm(AuthenticationForm):
    """Django's login form with the address as the username. The field keeps Django's name
    (`username`, as on the admin login) so one rate-limit key covers both forms. Wrong password,
    unknown address, inactive account and an account without a password all fail with the same
    message, and Django runs the hasher in every case so timing does not tell them apart."""

    username = forms.EmailField(
        label="Email", max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True, "inputmode": "email"}),
    )
    password = forms.CharField(
        label="Password", strip=False, max_length=128, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password don't match an account. Check both, or reset your password.",
    }


class PasswordResetRequestForm(PasswordResetForm):
    """Reset by email, for the active account with that address, including accounts created at
    purchase that never chose a password (Django's own form skips those). Emails go through the
    logged email layer, never Django's send_mail."""

    email = forms.EmailField(
        label="Email", max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True, "inputmode": "email"}),
    )

    # Deliberately not Django's signature (type: ignore[override]): none of its mail options apply.
    def save(self, **kwargs):  # type: ignore[override]
        # Never Django's save(): it looks the account up during the request (see the service).
        return services.password_reset_request(email=self.cleaned_data["email"])


phone_characters = RegexValidator(
    r"^[0-9+()\-. ]*$", "Use digits, spaces and + ( ) - . only.",
)


class ProfileForm(forms.Form):
    full_name = forms.CharField(
        label="Your name", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    phone = forms.CharField(
        label="Phone", max_length=40, required=False, validators=[phone_characters],
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel", "type": "tel"}),
        help_text="Optional. We only call about your website.",
    )


class AccountPasswordChangeForm(PasswordChangeForm):
    """Django's change form (current password checked, validators run), saved through a service."""

    old_password = forms.CharField(
        label="Current password", strip=False, max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    new_password1 = forms.CharField(
        label="New password", strip=False, max_length=128, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters; not a common password and not only numbers.",
    )
    new_password2 = forms.CharField(
        label="Repeat the new password", strip=False, max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def save(self, commit=True):
        raise NotImplementedError("use customers.services.customer_password_change")


class FirstPasswordForm(ChoosePasswordForm):
    """The same rules, on the success page, where the news ("it's yours!") must keep the focus."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].widget.attrs.pop("autofocus", None)
