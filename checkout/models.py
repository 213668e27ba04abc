from decimal import Decimal

from django.conf import settings
from django.db import models

from webmagic.models import TimeStampedModel, UUIDModel


class CheckoutSession(UUIDModel):
    """One purchase (or hosting) attempt: our row first, then Recurrente's hosted checkout."""

    class Status(models.TextChoices):
        INITIATED = "initiated", "Initiated"
        CHECKOUT_CREATED = "checkout_created", "Checkout created"
        COMPLETED = "completed", "Completed"
        ABANDONED = "abandoned", "Abandoned (reminder sent)"
        EXPIRED = "expired", "Expired"

    class Kind(models.TextChoices):
        PURCHASE = "purchase", "Purchase ($495 once)"
        SUBSCRIPTION = "subscription", "Hosting subscription"

    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="checkout_sessions")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PURCHASE)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INITIATED)
    customer_name = models.CharField(max_length=200)
    customer_email = models.EmailField(max_length=254, db_index=True, help_text="Normalised (trimmed, lower-case)")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="checkout_sessions"
    )
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")

    recurrente_checkout_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    checkout_url = models.URLField(max_length=500, blank=True)
    checkout_created_at = models.DateTimeField(null=True, blank=True)
    checkout_error = models.TextField(blank=True, help_text="Why creating the Recurrente checkout failed")

    # Request context, kept for fraud review; stripped after 90 days by the cleanup task.
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    referrer = models.CharField(max_length=500, blank=True)

    completed_at = models.DateTimeField(null=True, blank=True)
    abandoned_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    last_failure_reason = models.CharField(max_length=500, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    payment_in_progress_at = models.DateTimeField(null=True, blank=True, help_text="Bank transfer started")

    # Recovery: the reminder is claimed (reminder_sent_at set) before the email goes out.
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    recovery_code = models.CharField(max_length=40, blank=True, db_index=True)
    discount_percent = models.PositiveSmallIntegerField(default=0)
    recovered_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="recovery_checkouts",
        help_text="The abandoned session whose reminder led to this checkout",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The abandoned-cart scan only ever looks at open checkouts; a partial index keeps its
            # cost proportional to them, not to the whole table.
            models.Index(
                fields=["created_at", "status", "reminder_sent_at"],
                condition=models.Q(status="checkout_created"),
                name="checkout_abandoned_scan_idx",
            ),
            models.Index(fields=["site", "customer_email", "status"], name="checkout_site_email_idx"),
            models.Index(fields=["status", "created_at"], name="checkout_status_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="checkout_amount_positive"),
            models.CheckConstraint(
                condition=~models.Q(status="checkout_created") | models.Q(recurrente_checkout_id__isnull=False),
                name="checkout_created_has_checkout_id",
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.site_id} by {self.customer_email} ({self.status})"


class Subscription(TimeStampedModel):
    """Mirror of a Recurrente subscription (su_…) that keeps a site live."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (checkout paid, not yet confirmed)"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        UNABLE_TO_START = "unable_to_start", "Unable to start"

    recurrente_subscription_id = models.CharField(max_length=64, unique=True)
    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="subscriptions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions"
    )
    checkout_session = models.ForeignKey(
        CheckoutSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    amount = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("95.00"))
    currency = models.CharField(max_length=3, default="USD")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # Recurrente's time of the newest event applied; older events never overwrite newer state.
    last_event_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.recurrente_subscription_id} ({self.status})"


class Payment(TimeStampedModel):
    """Money Recurrente confirmed. Unique on Recurrente's payment id, so the legacy and unified
    events for one card payment record it once."""

    class Kind(models.TextChoices):
        PURCHASE = "purchase", "Site purchase"
        SUBSCRIPTION = "subscription", "Hosting"

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        REFUND_PENDING = "refund_pending", "Refund pending"
        REFUNDED = "refunded", "Refunded"

    class Flag(models.TextChoices):
        NONE = "", "—"
        NEEDS_REFUND = "needs_refund", "Needs refund (site already sold)"
        AMOUNT_MISMATCH = "amount_mismatch", "Amount or currency mismatch"

    recurrente_payment_id = models.CharField(max_length=64, unique=True)
    recurrente_intent_id = models.CharField(max_length=64, blank=True)
    recurrente_checkout_id = models.CharField(max_length=64, blank=True, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="payments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    checkout_session = models.ForeignKey(
        CheckoutSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUCCEEDED)
    flag = models.CharField(max_length=20, choices=Flag.choices, default=Flag.NONE, blank=True, db_index=True)
    flag_note = models.CharField(max_length=500, blank=True)
    payment_method = models.CharField(max_length=32, blank=True, help_text="card, bank_transfer_receiver, …")
    card_last4 = models.CharField(max_length=4, blank=True)
    paid_at = models.DateTimeField()
    refunded_at = models.DateTimeField(null=True, blank=True)
    recurrente_refund_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-paid_at"]
        indexes = [models.Index(fields=["site", "-paid_at"], name="payment_site_paid_idx")]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive")]

    def __str__(self):
        return f"{self.recurrente_payment_id} {self.amount} {self.currency} ({self.status})"


class SandboxCheckout(models.Model):
    """A checkout on the built-in imitation of Recurrente (laptop/demo mode only).

    It keeps what Recurrente would keep: the request we sent and what happened on the hosted
    page, so the sandbox can answer GET /checkouts/{id} and send webhook deliveries.
    """

    class Status(models.TextChoices):
        UNPAID = "unpaid", "Unpaid"
        PAID = "paid", "Paid"
        EXPIRED = "expired", "Expired"

    id = models.CharField(primary_key=True, max_length=64)
    request = models.JSONField(help_text="The POST /checkouts body we received")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNPAID)
    payment_id = models.CharField(max_length=64, blank=True)
    intent_id = models.CharField(max_length=64, blank=True)
    subscription_id = models.CharField(max_length=64, blank=True)
    subscription_status = models.CharField(max_length=20, blank=True)
    declines = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"sandbox {self.id} ({self.status})"
