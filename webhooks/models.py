from django.db import models

from webmagic import webhook_signing as signing


class WebhookEvent(models.Model):
    """One verified delivery from Recurrente, stored before it is processed."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    delivery_id = models.CharField(max_length=100, unique=True, help_text="svix-id: the same on every retry")
    event_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=100, blank=True, db_index=True, help_text="Root id: pa_…, in_…, su_…")
    live_mode = models.BooleanField(null=True)
    raw_body = models.TextField()
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # When a failed event is due for another automatic try; null once we have given up.
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # The sweep looks for events left unprocessed; the partial index keeps that cheap.
            models.Index(
                fields=["received_at"],
                condition=models.Q(status__in=["received", "processing", "failed"]),
                name="webhook_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.delivery_id} ({self.status})"


class WebhookRejection(models.Model):
    """How many deliveries we refused, per reason and per minute. Only the reason and the counts:
    nothing of an unverified body or header is ever kept (it may be an attacker's text)."""

    class Reason(models.TextChoices):
        # Labels say what each reason usually means, for the staff reading the admin and alerts.
        BAD_SIGNATURE = signing.BAD_SIGNATURE, "Bad signature: wrong or rotated RECURRENTE_WEBHOOK_SECRETS"
        NO_SECRET = signing.NO_SECRET, "No usable secret: RECURRENTE_WEBHOOK_SECRETS empty or not a whsec_ value"
        MISSING_HEADERS = signing.MISSING_HEADERS, "Missing/malformed svix headers: not Svix, or a proxy strips them"
        STALE_TIMESTAMP = signing.STALE_TIMESTAMP, "Stale timestamp: our server clock runs ahead, or a replay"
        FUTURE_TIMESTAMP = signing.FUTURE_TIMESTAMP, "Future timestamp: our server clock runs behind"
        MALFORMED_BODY = "malformed_body", "Malformed body: not a JSON event (or a bad Content-Length)"
        OVERSIZED_BODY = "oversized_body", "Oversized body: larger than WEBHOOK_MAX_BODY_BYTES"
        OTHER_MODE = "other_mode", "Other mode: live_mode differs from RECURRENTE_LIVE_MODE (stored, ignored)"

    bucket = models.DateTimeField(help_text="Start of the minute (UTC)")
    reason = models.CharField(max_length=32, choices=Reason.choices)
    count = models.PositiveIntegerField(default=0)
    last_rejected_at = models.DateTimeField()

    class Meta:
        ordering = ["-bucket", "reason"]
        constraints = [
            # The upsert's conflict target. Its index leads with `bucket`, so it also serves every
            # "since time X" query (alerts, health page, prune) without a second index.
            models.UniqueConstraint(fields=["bucket", "reason"], name="webhook_rejection_bucket_reason_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.count} × {self.reason} at {self.bucket:%Y-%m-%d %H:%M}"
