from django import forms
from django.contrib.auth.forms import SetPasswordForm


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
