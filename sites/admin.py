from django.contrib import admin

from .models import DomainVerificationRecord, EditRequest, Site, SiteVersion


class SiteVersionInline(admin.TabularInline):
    model = SiteVersion
    extra = 0
    fields = ["number", "is_current", "note", "created_at"]
    readonly_fields = ["created_at"]
    show_change_link = True


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["slug", "business_name", "status", "owner", "purchase_amount", "monthly_amount", "purchased_at", "created_at"]
    list_filter = ["status", "business_type"]
    search_fields = ["slug", "business_name", "owner__email", "business_email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["created_at", "updated_at"]
    date_hierarchy = "created_at"
    inlines = [SiteVersionInline]


@admin.register(SiteVersion)
class SiteVersionAdmin(admin.ModelAdmin):
    list_display = ["site", "number", "is_current", "note", "created_at"]
    list_filter = ["is_current"]
    search_fields = ["site__slug", "note"]
    list_select_related = ["site"]
    raw_id_fields = ["site"]


@admin.register(EditRequest)
class EditRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "site", "requested_by", "status", "created_at", "resolved_at"]
    list_filter = ["status"]
    search_fields = ["site__slug", "requested_by__email", "description"]
    list_select_related = ["site", "requested_by"]
    raw_id_fields = ["site", "requested_by"]


@admin.register(DomainVerificationRecord)
class DomainVerificationRecordAdmin(admin.ModelAdmin):
    list_display = ["domain", "site", "status", "last_checked_at", "verified_at"]
    list_filter = ["status"]
    search_fields = ["domain", "site__slug"]
    list_select_related = ["site"]
    raw_id_fields = ["site"]
