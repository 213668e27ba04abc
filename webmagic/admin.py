from django.contrib import admin

from .models import EmailLog

admin.site.site_header = "WebMagic staff"
admin.site.site_title = "WebMagic staff"


@admin.register(EmailLog)
class EmailLogAdmin(admin.ModelAdmin):
    list_display = ["kind", "to_email", "subject", "status", "attempts", "sent_at", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["to_email", "subject", "provider_message_id", "dedupe_key"]
    date_hierarchy = "created_at"
    raw_id_fields = ["checkout_session", "user"]
    readonly_fields = [f.name for f in EmailLog._meta.fields]

    def has_add_permission(self, request):
        return False
