from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from webmagic.models import TimeStampedModel, UUIDModel


class Site(UUIDModel):
    """A generated website for one business, from preview to live."""

    class Status(models.TextChoices):
        PREVIEW = "preview", "Preview"
        OWNED = "owned", "Owned (not hosted)"
        ACTIVE = "active", "Active (live)"
        SUSPENDED = "suspended", "Suspended"

    slug = models.SlugField(max_length=100, unique=True)
    business_name = models.CharField(max_length=200)
    business_type = models.CharField(max_length=100, blank=True)
    business_city = models.CharField(max_length=100, blank=True)
    business_email = models.EmailField(max_length=254, blank=True, help_text="Who the preview was sent to")
    business_phone = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PREVIEW, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="sites"
    )
    purchase_amount = models.DecimalField(
        max_digits=10, decimal_places=2, default=Decimal("495.00"), validators=[MinValueValidator(Decimal("0.01"))]
    )
    monthly_amount = models.DecimalField(
        max_digits=10, decimal_places=2, default=Decimal("95.00"), validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3, default="USD")
    purchased_at = models.DateTimeField(null=True, blank=True)
    purchase_transaction_id = models.CharField(max_length=64, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    hosting_nudge_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["business_name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(purchase_amount__gt=0), name="site_purchase_amount_positive"),
            models.CheckConstraint(condition=models.Q(monthly_amount__gt=0), name="site_monthly_amount_positive"),
            # A site past preview has been bought, so it must have an owner.
            models.CheckConstraint(
                condition=models.Q(status="preview") | models.Q(owner__isnull=False), name="site_sold_has_owner"
            ),
        ]

    def __str__(self):
        return f"{self.business_name} ({self.slug})"

    @property
    def is_for_sale(self) -> bool:
        return self.status == self.Status.PREVIEW


class SiteVersion(TimeStampedModel):
    """One generated HTML document for a site; exactly one is current."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    html = models.TextField(help_text="Untrusted markup: only ever served sandboxed")
    note = models.CharField(max_length=200, blank=True)
    is_current = models.BooleanField(default=False)

    class Meta:
        ordering = ["site", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["site", "number"], name="siteversion_unique_number"),
            models.UniqueConstraint(
                fields=["site"], condition=models.Q(is_current=True), name="siteversion_one_current"
            ),
        ]

    def __str__(self):
        return f"{self.site.slug} v{self.number}{' (current)' if self.is_current else ''}"


class EditRequest(TimeStampedModel):
    """An active site's owner asks for a change; staff work it in admin."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"
        REJECTED = "rejected", "Rejected"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="edit_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="edit_requests")
    description = models.TextField(max_length=5000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    staff_note = models.TextField(blank=True, max_length=5000)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Edit request #{self.pk} for {self.site.slug} ({self.status})"


class DomainVerificationRecord(TimeStampedModel):
    """A custom domain an owner wants to point at their live site, proven by a DNS TXT record."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, unique=True, help_text="Lower-case hostname")
    txt_record_name = models.CharField(max_length=300)
    txt_record_value = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["domain"]

    def __str__(self):
        return f"{self.domain} → {self.site.slug} ({self.status})"
