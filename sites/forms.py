from django import forms

from .domains import domain_normalise
from .models import DomainVerificationRecord

EDIT_REQUEST_MAX_LENGTH = 2000


class EditRequestForm(forms.Form):
    description = forms.CharField(
        label="What would you like changed?",
        max_length=EDIT_REQUEST_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 6, "maxlength": EDIT_REQUEST_MAX_LENGTH}),
        help_text="For example: “Change the opening hours to Mon–Fri 8–6” or “Replace the phone number with 555 0100”. "
        f"Up to {EDIT_REQUEST_MAX_LENGTH:,} characters.",
        error_messages={"required": "Tell us what you would like changed."},
    )


class DomainForm(forms.Form):
    domain = forms.CharField(
        label="Your domain",
        max_length=300,
        strip=True,
        widget=forms.TextInput(attrs={
            "autocomplete": "off", "autocapitalize": "none", "spellcheck": "false", "inputmode": "url",
            "placeholder": "www.example.com",
        }),
        help_text="A domain you own, such as www.yourbusiness.com. You will add one DNS record to prove it's yours.",
        error_messages={"required": "Enter your domain name."},
    )

    def clean_domain(self) -> str:
        domain = domain_normalise(self.cleaned_data["domain"])
        if DomainVerificationRecord.objects.filter(domain=domain).exclude(
            status=DomainVerificationRecord.Status.FAILED
        ).exists():
            raise forms.ValidationError("That domain is already connected to a WebMagic site.", code="taken")
        return domain
