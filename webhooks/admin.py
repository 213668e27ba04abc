import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from webmagic.admin import NeverDeleted, ReadOnlyAdmin

from . import services
from .models import WebhookEvent, WebhookRejection


@admin.register(WebhookEvent)
class WebhookEventAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = ["delivery_id", "event_type", "object_id", "status", "attempts", "short_error", "received_at", "processed_at"]
    list_filter = ["status", "event_type", "live_mode"]
    search_fields = ["delivery_id", "object_id", "event_type"]
    date_hierarchy = "received_at"
    readonly_fields = [
        "delivery_id", "event_type", "object_id", "live_mode", "status", "attempts", "error_text",
        "received_at", "processing_started_at", "processed_at", "next_retry_at", "pretty_payload",
    ]
    fields = [
        "delivery_id", "event_type", "object_id", "live_mode", "status", "attempts", "error_text", "received_at",
        "processing_started_at", "processed_at", "next_retry_at", "pretty_payload",
    ]
    actions = ["reprocess"]

    class Media:
        # The strict CSP forbids inline style attributes: the payload's layout lives in a file.
        css = {"all": ["css/admin-staff.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEvent]:
        # The bodies can be large; the list never shows them (the change page loads the payload).
        return super().get_queryset(request).defer("raw_body", "payload")

    @admin.display(description="Error")
    def short_error(self, obj: WebhookEvent) -> str:
        first = obj.error.splitlines()[0] if obj.error else ""
        return first[:120] + ("…" if len(first) > 120 else "")

    @admin.display(description="Error")
    def error_text(self, obj: WebhookEvent) -> SafeString | str:
        return format_html('<pre class="webhook-error">{}</pre>', obj.error) if obj.error else "—"

    @admin.display(description="Payload")
    def pretty_payload(self, obj: WebhookEvent) -> SafeString:
        # format_html escapes the JSON: payload strings are attacker-controlled text.
        return format_html('<pre class="webhook-payload">{}</pre>', json.dumps(obj.payload, indent=2, ensure_ascii=False))

    @admin.action(description="Reprocess selected failed or ignored events", permissions=["change"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        ids = services.webhook_events_reprocess(event_ids=queryset.values_list("pk", flat=True))
        skipped = queryset.count() - len(ids)
        self.message_user(request, f"Queued {len(ids)} event(s) for processing.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} event(s) that are not failed or ignored (processed or in progress).", messages.WARNING
            )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(WebhookRejection)
class WebhookRejectionAdmin(ReadOnlyAdmin):
    """Counts of refused deliveries, written only by intake: staff read them, never edit them."""

    list_display = ["bucket", "reason", "count", "last_rejected_at"]
    list_filter = ["reason"]
    date_hierarchy = "bucket"
    ordering = ["-bucket", "reason"]
