from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from webmagic.admin import MoneyRecordsProtect

from . import emails
from .models import CustomerUser


class CustomerCreationForm(UserCreationForm):
    class Meta:
        model = CustomerUser
        fields = ("email", "full_name")


class CustomerChangeForm(UserChangeForm):
    class Meta:
        model = CustomerUser
        fields = "__all__"


@admin.register(CustomerUser)
class CustomerUserAdmin(MoneyRecordsProtect, UserAdmin):
    protected_delete_hint = ("An account that paid, started a checkout, owns a site or asked for a refund is never "
                             "deleted: the money records name it. To close it, untick \u201cActive\u201d instead.")
    form = CustomerChangeForm
    add_form = CustomerCreationForm
    ordering = ["-created_at"]
    list_display = ["email", "full_name", "email_verified", "is_staff", "is_active", "login_count", "last_login", "created_at"]
    list_filter = ["is_staff", "is_active", "email_verified"]
    search_fields = ["email", "full_name", "phone"]
    readonly_fields = ["last_login", "login_count", "created_at", "updated_at", "email_verified_at"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["full_name", "phone", "recurrente_customer_id"]}),
        ("Verification", {"fields": ["email_verified", "email_verified_at"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Activity", {"fields": ["last_login", "login_count", "created_at", "updated_at"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "full_name", "password1", "password2"]})]
    actions = ["resend_set_password_email", "send_verification_email"]

    @admin.action(description="Email a new set-your-password link", permissions=["change"])
    def resend_set_password_email(self, request, queryset):
        sent = 0
        for user in queryset.filter(is_active=True):
            # No dedupe key: staff resending is deliberate. The link is made when the email is sent.
            emails.welcome_email_queue(user=user, resent_by_staff=True)
            sent += 1
        self.message_user(request, f"Queued a set-your-password email for {sent} customer(s).", messages.SUCCESS)

    @admin.action(description="Email a link to confirm their address", permissions=["change"])
    def send_verification_email(self, request, queryset):
        sent = sum(1 for user in queryset.filter(is_active=True, email_verified=False) if emails.verify_email_queue(user=user))
        self.message_user(request, f"Queued a confirmation email for {sent} unverified customer(s).", messages.SUCCESS)
