import uuid

from django.db import models


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class UUIDModel(TimeStampedModel):
    """Rows whose id appears in URLs or metadata get an unguessable UUID."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        abstract = True


class EmailLog(TimeStampedModel):
    """One row per email we send: what, to whom, and what the provider says happened to it."""

    class Kind(models.TextChoices):
        WELCOME = "welcome", "Welcome + set password"
        RECEIPT = "receipt", "Purchase receipt"
        VERIFY_EMAIL = "verify_email", "Email verification"
        PASSWORD_RESET = "password_reset", "Password reset"
        HOSTING_ACTIVATED = "hosting_activated", "Hosting activated"
        PAYMENT_PROBLEM = "payment_problem", "Payment problem"
        HOSTING_SUSPENDED = "hosting_suspended", "Hosting suspended/cancelled"
        HOSTING_NUDGE = "hosting_nudge", "Activate hosting nudge"
        RECOVERY_REMINDER = "recovery_reminder", "Recovery reminder"
        STAFF_ALERT = "staff_alert", "Staff alert"
        REFUND_NEEDED = "refund_needed", "Payment needing refund"
        EDIT_REQUEST = "edit_request", "Edit request update"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending (outcome unknown if it stays here)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled (no longer wanted when it was due to go)"
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"

    # Statuses of an email that left us (whatever happened at the recipient's end afterwards).
    LEFT_US = (Status.SENT, Status.DELIVERED, Status.OPENED, Status.CLICKED, Status.BOUNCED, Status.COMPLAINED)

    kind = models.CharField(max_length=32, choices=Kind.choices)
    to_email = models.EmailField(max_length=254)
    subject = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Makes "send this email once" a database fact (e.g. "welcome:user:42"); null for repeatable mail.
    dedupe_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    # Ids and display values only: links carrying tokens are built when the email is sent.
    context = models.JSONField(default=dict, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    checkout_session = models.ForeignKey(
        "checkout.CheckoutSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="emails"
    )
    user = models.ForeignKey("customers.CustomerUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="emails")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "status", "created_at"], name="emaillog_kind_status_idx")]

    def __str__(self):
        return f"{self.get_kind_display()} to {self.to_email} ({self.status})"


class EmailSuppression(models.Model):
    """An address that asked for no more reminder emails. Transactional mail (receipts, password
    links) still goes out; reminders and nudges check this table first."""

    class Source(models.TextChoices):
        ONE_CLICK = "one_click", "One-click unsubscribe (mail client)"
        LINK = "link", "Unsubscribe link"
        STAFF = "staff", "Added by staff"
        COMPLAINT = "complaint", "Spam complaint"

    # Normalised (trimmed, lower-case) so one mailbox has one row whatever the spelling.
    email = models.EmailField(max_length=254, unique=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.LINK)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.email} (unsubscribed, {self.source})"
