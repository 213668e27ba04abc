from django.contrib import admin

from .models import CheckoutSession, Payment, Subscription

PERSONAL_DATA = ["customer_name", "customer_email", "ip_address", "user_agent", "referrer"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "site", "kind", "status", "customer_email", "amount", "created_at", "reminder_sent_at", "completed_at"]
    list_filter = ["status", "kind", ("reminder_sent_at", admin.EmptyFieldListFilter), "discount_percent"]
    search_fields = ["customer_email", "recurrente_checkout_id", "site__slug", "recovery_code"]
    list_select_related = ["site"]
    date_hierarchy = "created_at"
    raw_id_fields = ["site", "user", "recovered_from"]
    # Personal data is shown, never edited, from admin.
    readonly_fields = [*PERSONAL_DATA, "created_at", "updated_at", "recurrente_checkout_id", "checkout_url"]


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ["recurrente_payment_id", "site", "kind", "amount", "currency", "status", "flag", "paid_at"]
    list_filter = ["status", "flag", "kind", "currency"]
    search_fields = ["recurrente_payment_id", "recurrente_checkout_id", "site__slug", "user__email"]
    list_select_related = ["site"]
    date_hierarchy = "paid_at"
    raw_id_fields = ["site", "user", "checkout_session", "subscription"]
    readonly_fields = [
        "recurrente_payment_id", "recurrente_intent_id", "recurrente_checkout_id", "amount", "currency", "paid_at", "created_at",
    ]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["recurrente_subscription_id", "site", "status", "current_period_end", "last_event_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["recurrente_subscription_id", "site__slug", "user__email"]
    list_select_related = ["site"]
    raw_id_fields = ["site", "user", "checkout_session"]
    readonly_fields = ["recurrente_subscription_id", "last_event_at", "created_at", "updated_at"]
