from django import forms

from customers.models import normalize_email_address

NAME_MAX_LENGTH = 120
# A receipt, an invoice and every email greet the buyer by this name: one letter is a slip, not a name.
NAME_MIN_LETTERS = 2


class PurchaseForm(forms.Form):
    full_name = forms.CharField(
        label="Your full name", max_length=NAME_MAX_LENGTH, strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "name", "autofocus": True}),
        error_messages={"required": "Please tell us your name."},
    )
    email = forms.EmailField(
        label="Email", max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "inputmode": "email"}),
        error_messages={"required": "We need your email to send your receipt and login.", "invalid": "Please enter a valid email address."},
    )

    def clean_full_name(self):
        name = " ".join(self.cleaned_data["full_name"].split())
        if any(not ch.isprintable() for ch in name):
            raise forms.ValidationError("Please use letters, spaces and common punctuation only.")
        if sum(ch.isalpha() for ch in name) < NAME_MIN_LETTERS:
            raise forms.ValidationError(
                "Please enter your full name as it should appear on your receipt (at least two letters).", code="too_short",
            )
        return name

    def clean_email(self):
        return normalize_email_address(self.cleaned_data["email"])
