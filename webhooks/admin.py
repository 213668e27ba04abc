import json

from django.contrib import admin, messages
from django.utils.html import format_html

from . import services
from .models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["delivery_id", "event_type", "object_id", "status", "attempts", "received_at", "processed_at"]
    list_filter = ["status", "event_type", "live_mode"]
    search_fields = ["delivery_id", "object_id", "event_type"]
    date_hierarchy = "received_at"
    exclude = ["raw_body", "payload"]
    readonly_fields = [
        "delivery_id", "event_type", "object_id", "live_mode", "status", "attempts", "error",
        "received_at", "processing_started_at", "processed_at", "next_retry_at", "pretty_payload",
    ]
    actions = ["reprocess"]

    @admin.display(description="Payload")
    def pretty_payload(self, obj):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    @admin.action(description="Reprocess selected failed or ignored events")
    def reprocess(self, request, queryset):
        ids = services.webhook_events_reprocess(event_ids=queryset.values_list("pk", flat=True))
        skipped = queryset.count() - len(ids)
        self.message_user(request, f"Queued {len(ids)} event(s) for processing.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} event(s) that are not failed or ignored (processed or in progress).", messages.WARNING
            )

    def has_add_permission(self, request):
        return False
