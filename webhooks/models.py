from django.db import models


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

    def __str__(self):
        return f"{self.event_type} {self.delivery_id} ({self.status})"
