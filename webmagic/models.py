import uuid

from django.conf import settings
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
        REFUND = "refund", "Refund issued"
        SITE_SOLD_REFUND = "site_sold_refund", "Site sold before the payment: refund started"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending (a worker has it; taken over if that worker died)"
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
    # Since when an attempt may have reached the provider without our knowing (its answer lost,
    # its worker dead): retries go under the same idempotency key only while the provider remembers it.
    outcome_unknown_since = models.DateTimeField(null=True, blank=True)
    # Set when staff send a failed email again (a new send); otherwise derived from the row.
    idempotency_key = models.UUIDField(null=True, blank=True, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    # The base app's one relation up to an app (a table link by name, never an import): recovery
    # and the funnel join reminders to their checkout sessions through it.
    checkout_session = models.ForeignKey(
        "checkout.CheckoutSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="emails"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="emails")

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


class Heartbeat(models.Model):
    """When a periodic task last ran, one row per name ("worker"): proof that beat sends and a
    worker consumes, which the queue itself cannot report when it is the thing that is stuck."""

    name = models.CharField(max_length=64, primary_key=True)
    beat_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} heartbeat at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class StaffAlert(models.Model):
    """One row per staff alert raised (DESIGN §8), and the claim that makes "at most once an hour
    per kind" hold when two checks run at once.

    `sequence` numbers the alerts of one kind: a run claims the next number after the latest alert
    it saw, so two runs that both saw the same latest alert (or none) race for one (kind, sequence)
    row and only one wins. A fixed clock-hour bucket would let two runs on either side of the hour
    both deliver."""

    kind = models.CharField(max_length=64)
    sequence = models.PositiveIntegerField()
    subject = models.CharField(max_length=255)
    body = models.TextField()
    fired_at = models.DateTimeField(db_index=True)
    # Sent synchronously (from outside the queue: healthz, the check_alerts command) or queued.
    direct = models.BooleanField(default=False)
    delivered_at = models.DateTimeField(null=True, blank=True)
    emailed = models.BooleanField(default=False, help_text="Email queued (or sent, if direct) to at least one of ADMINS.")
    webhook_posted = models.BooleanField(default=False, help_text="ALERT_WEBHOOK_URL answered 2xx.")
    delivery_notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-fired_at"]
        constraints = [models.UniqueConstraint(fields=["kind", "sequence"], name="staffalert_kind_sequence_uniq")]

    def __str__(self):
        return f"{self.kind} at {self.fired_at:%Y-%m-%d %H:%M} UTC: {self.subject}"
