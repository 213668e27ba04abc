from decimal import Decimal

from django.conf import settings
from django.db import models

from webmagic.models import TimeStampedModel, UUIDModel

# Checkout statuses that can still be paid: the reconciler keeps asking Recurrente about them.
CHECKOUT_RECONCILED_STATUSES = ("checkout_created", "abandoned")


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
    # PROTECT on every link from a money record: deleting a customer (or another money record)
    # must never silently cut who paid, for what, from the books. Accounts are deactivated instead.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="checkout_sessions"
    )
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")

    recurrente_checkout_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    checkout_url = models.URLField(max_length=500, blank=True)
    checkout_created_at = models.DateTimeField(null=True, blank=True)
    checkout_error = models.TextField(blank=True, help_text="Why creating the Recurrente checkout failed")
    # Set while one request asks Recurrente for this session's checkout, so a concurrent duplicate
    # waits for it instead of creating a second one; no row lock is held across that HTTP call.
    checkout_requested_at = models.DateTimeField(null=True, blank=True)

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

    class ClosedReason(models.TextChoices):
        NONE = "", "—"
        SITE_SOLD = "site_sold", "The site was sold to another buyer"

    # Closed on our side: never handed out again nor reminded. The status is left as it was, so a
    # checkout still payable at Recurrente (Recurrente cannot be told to expire it) is reconciled
    # until it expires, and a payment on it is recorded and refunded (services/site_sold.py).
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.CharField(max_length=20, choices=ClosedReason.choices, default=ClosedReason.NONE, blank=True)

    # Reconciliation (checkout/services/reconcile.py): Recurrente is asked about an open checkout on
    # a back-off schedule until it is paid or can no longer be paid; null means "not to be asked".
    next_reconcile_at = models.DateTimeField(null=True, blank=True)
    reconcile_checks = models.PositiveIntegerField(default=0)
    last_reconciled_at = models.DateTimeField(null=True, blank=True)

    # Recovery: the reminder is claimed (reminder_sent_at set) before the email goes out.
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    recovery_code = models.CharField(max_length=40, blank=True, db_index=True)
    discount_percent = models.PositiveSmallIntegerField(default=0)
    recovered_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="recovery_checkouts",
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
            # The reconciler's due query: only checkouts that could still be paid are in it, so its
            # cost follows the open sessions, never the (growing) closed ones.
            models.Index(
                fields=["next_reconcile_at"],
                condition=models.Q(status__in=CHECKOUT_RECONCILED_STATUSES, next_reconcile_at__isnull=False),
                name="checkout_reconcile_due_idx",
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


# Subscription statuses the reconciler keeps asking Recurrente about (at least daily).
SUBSCRIPTION_RECONCILED_STATUSES = ("pending", "active", "past_due", "paused")


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
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="subscriptions"
    )
    checkout_session = models.ForeignKey(
        CheckoutSession, null=True, blank=True, on_delete=models.PROTECT, related_name="subscriptions"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    amount = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("95.00"))
    currency = models.CharField(max_length=3, default="USD")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # Recurrente's time of the newest event applied; older events never overwrite newer state.
    last_event_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # When Recurrente last said billing resumed after a cancellation (which it cleared).
    reactivated_at = models.DateTimeField(null=True, blank=True)
    # Cancelled by our period-end job on the strength of the owner's request, not (yet) by Recurrente.
    cancellation_inferred = models.BooleanField(default=False)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # When the reconciler last read this subscription from Recurrente (at least daily while live).
    last_reconciled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["last_reconciled_at"], condition=models.Q(status__in=SUBSCRIPTION_RECONCILED_STATUSES),
                name="subscription_reconcile_idx",
            ),
        ]

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
        DISPUTED = "disputed", "Disputed (chargeback)"

    recurrente_payment_id = models.CharField(max_length=64, unique=True)
    recurrente_intent_id = models.CharField(max_length=64, blank=True)
    recurrente_checkout_id = models.CharField(max_length=64, blank=True, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="payments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    checkout_session = models.ForeignKey(
        CheckoutSession, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
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
    class Source(models.TextChoices):
        WEBHOOK = "webhook", "A webhook"
        RECONCILIATION = "reconciliation", "Reconciliation (asked Recurrente)"

    # How we learnt of it: a payment only reconciliation found, with no webhook after it, means
    # webhooks are not reaching us (an alert rule in webhooks/alerts.py).
    recorded_from = models.CharField(max_length=16, choices=Source.choices, default=Source.WEBHOOK)
    # The re_… id of the refund in force (pending or succeeded); its history is in `refunds`.
    recurrente_refund_id = models.CharField(max_length=64, blank=True)
    # Set when a refund request got no clear answer (timeout, connection dropped after sending,
    # 5xx): Recurrente may have refunded it. No refund is requested again until staff resolve it
    # by recording the dashboard refund, or by saying no refund was made.
    refund_outcome_unknown_since = models.DateTimeField(
        null=True, blank=True, help_text="A refund request's outcome is unknown: check Recurrente's dashboard",
    )

    class Meta:
        ordering = ["-paid_at"]
        indexes = [models.Index(fields=["site", "-paid_at"], name="payment_site_paid_idx")]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive")]

    def __str__(self):
        return f"{self.recurrente_payment_id} {self.amount} {self.currency} ({self.status})"


class Refund(TimeStampedModel):
    """One refund at Recurrente (re_…). Recurrente's refund object names no payment, so this row,
    written when we ask for the refund (or when staff record one made in Recurrente's dashboard),
    is the only link between the two."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        VOIDED = "voided", "Voided"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.VOIDED)

    class Source(models.TextChoices):
        STAFF_REQUEST = "staff_request", "Requested by staff from admin"
        SITE_SOLD = "site_sold", "Requested automatically: the site had already been sold"
        DASHBOARD = "dashboard", "Made in Recurrente's dashboard, recorded by staff"
        WEBHOOK = "webhook", "Reported by a webhook"

    recurrente_refund_id = models.CharField(max_length=64, unique=True)
    payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds",
        help_text="Empty when a webhook reported a refund we cannot match: staff link it by recording it.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=16, choices=Source.choices)
    customer_refunded_amount = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    account_refunded_amount = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="What it cost our account (fees kept)"
    )
    currency = models.CharField(max_length=3, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds_requested"
    )
    recurrente_created_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    # Pending refunds are polled with GET /refunds/{id} on a back-off schedule.
    next_check_at = models.DateTimeField(null=True, blank=True)
    checks = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["next_check_at"], condition=models.Q(status="pending"), name="refund_poll_due_idx"),
        ]
        constraints = [
            # A payment is refunded in full at most once: one pending or succeeded refund each.
            models.UniqueConstraint(
                fields=["payment"], condition=models.Q(status__in=["pending", "succeeded"]), name="refund_one_live_per_payment",
            ),
        ]

    def __str__(self):
        return f"{self.recurrente_refund_id} ({self.status})"


class ReconcileRun(models.Model):
    """One pass of the reconciler: what it asked Recurrente and what it found (payments health page)."""

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    checkouts_checked = models.PositiveIntegerField(default=0)
    payments_found = models.PositiveIntegerField(default=0, help_text="Paid checkouts no webhook had recorded")
    subscriptions_checked = models.PositiveIntegerField(default=0)
    subscriptions_changed = models.PositiveIntegerField(default=0)
    refunds_checked = models.PositiveIntegerField(default=0)
    refunds_finalized = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Calls that failed; those rows are asked again later")
    left_for_next_run = models.PositiveIntegerField(default=0)
    stopped_early = models.CharField(max_length=200, blank=True, help_text="Why the pass stopped before its batch")
    findings = models.TextField(blank=True, help_text="One line per thing the pass changed")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"reconcile run {self.started_at:%Y-%m-%d %H:%M}"


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
    refund_id = models.CharField(max_length=64, blank=True)
    refund_status = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"sandbox {self.id} ({self.status})"
