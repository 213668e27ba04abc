from django.contrib import admin, messages

from .emails import emails_send_again
from .models import EmailLog, EmailSuppression, Heartbeat, StaffAlert

admin.site.site_header = "WebMagic staff"
admin.site.site_title = "WebMagic staff"


class NeverDeleted:
    """Money and dedupe records are never deleted, by anyone (superusers too), from admin: no
    delete link, no bulk "delete selected" action (Django drops it without this permission), and
    the delete URL answers 403. What a row should no longer do is a status set by the services."""

    def has_delete_permission(self, request, obj=None):
        return False


class MoneyRecordsProtect:
    """For rows that money records point to (a site, an account). Those links are PROTECT, so
    such a delete is always refused; say so by naming the records, as Django does for protected
    objects, instead of its "you lack permission to delete payments" (which reads as if a
    permission could allow it), and tell staff what to do instead."""

    protected_delete_hint = ""

    def get_deleted_objects(self, objs, request):
        # A mixin for ModelAdmin subclasses: the ModelAdmin after it in the MRO answers this call.
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        if protected:
            # Still refused: Django's delete views never delete while anything is protected.
            perms_needed = set()
            if self.protected_delete_hint:
                messages.warning(request, self.protected_delete_hint)
        return to_delete, model_count, perms_needed, protected


@admin.register(EmailLog)
class EmailLogAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = ["kind", "to_email", "subject", "status", "attempts", "sent_at", "opened_at", "clicked_at", "created_at"]
    list_filter = ["kind", "status", ("opened_at", admin.EmptyFieldListFilter), ("clicked_at", admin.EmptyFieldListFilter)]
    search_fields = ["to_email", "subject", "provider_message_id", "dedupe_key"]
    date_hierarchy = "created_at"
    raw_id_fields = ["checkout_session", "user"]
    readonly_fields = [f.name for f in EmailLog._meta.fields]
    actions = ["send_again"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Send again (failed emails only)", permissions=["send"])
    def send_again(self, request, queryset):
        # Listed first: the queryset may be filtered by status, which sending again changes.
        selected = list(queryset.values_list("pk", flat=True))
        sent = emails_send_again(log_ids=selected)
        skipped = len(selected) - len(sent)
        self.message_user(request, f"{len(sent)} failed email(s) queued again.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} email(s) were not failed and were left as they are.", messages.WARNING)

    def has_send_permission(self, request):
        # The log itself is never edited in admin (has_change_permission), but sending again
        # changes what happens: it takes the model's change permission, like other actions.
        return request.user.has_perm("webmagic.change_emaillog")

    def has_change_permission(self, request, obj=None):
        return False  # a record of what happened (and its dedupe keys): Brevo's tracking and the send task write it


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    list_display = ["email", "source", "created_at"]
    list_filter = ["source"]
    search_fields = ["email"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at"]

    # A person's own opt-out (link, one-click, spam complaint) is their consent record: removing or
    # rewriting it would mail them reminders they refused. Only an address staff added can go.
    def has_change_permission(self, request, obj=None):
        return (obj is None or obj.source == EmailSuppression.Source.STAFF) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return (obj is None or obj.source == EmailSuppression.Source.STAFF) and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        # Lookups compare normalised addresses; a staff typo in case must not create a second row.
        obj.email = obj.email.strip().lower()
        super().save_model(request, obj, form, change)


class ReadOnlyAdmin(NeverDeleted, admin.ModelAdmin):
    """A record of what happened, written by the app only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StaffAlert)
class StaffAlertAdmin(ReadOnlyAdmin):
    list_display = ["fired_at", "kind", "subject", "direct", "emailed", "webhook_posted", "delivered_at"]
    list_filter = ["kind", "direct", "emailed", "webhook_posted"]
    search_fields = ["subject", "body"]
    date_hierarchy = "fired_at"
    readonly_fields = [f.name for f in StaffAlert._meta.fields]


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "beat_at"]
    readonly_fields = ["name", "beat_at"]
