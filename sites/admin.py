import uuid
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from customers.models import CustomerUser, normalize_email_address
from webmagic.admin import MoneyRecordsProtect

from . import services
from .domains import verified_hosts_forget
from .models import DomainVerificationRecord, EditRequest, Site, SiteVersion

MAX_HTML_CHARS = 1_500_000  # below DATA_UPLOAD_MAX_MEMORY_SIZE (2 MB) with room for the rest of the form


class PublishVersionForm(forms.Form):
    html = forms.CharField(
        label="HTML", widget=forms.Textarea(attrs={"rows": 20, "cols": 100, "spellcheck": "false"}), max_length=MAX_HTML_CHARS,
        strip=False, help_text="The complete generated document. It is stored as is and only ever served sandboxed.",
    )
    note = forms.CharField(max_length=200, required=False, help_text="What changed, for the version list.")


class TransferOwnershipForm(forms.Form):
    email = forms.EmailField(label="New owner's email", help_text="An existing, active customer account.")

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        self.new_owner = CustomerUser.objects.filter(email=normalize_email_address(email), is_active=True).first()
        if self.new_owner is None:
            raise forms.ValidationError("No active customer account has this email. Create it under Customers first.")
        return email


class SiteVersionInline(admin.TabularInline):
    """Versions are never edited in place: publishing makes a new one, rolling back makes an old
    one current. The (untrusted) HTML is not shown here."""

    model = SiteVersion
    extra = 0
    can_delete = False
    fields = ["number", "is_current", "note", "created_at", "make_current"]
    # list is invariant: mypy types `fields` as Django's wider field-groups list, not list[str].
    readonly_fields = fields  # type: ignore[assignment]
    ordering = ["-number"]

    def get_queryset(self, request):
        # Each row's label uses the site's slug; the HTML can be large and is not displayed.
        return super().get_queryset(request).select_related("site").defer("html")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Roll back")
    def make_current(self, version):
        if version.is_current:
            return "current"
        url = reverse("admin:sites_site_make_current", args=[version.site_id, version.pk])
        return format_html('<a class="button" href="{}">Make this version current</a>', url)


@admin.register(Site)
class SiteAdmin(MoneyRecordsProtect, admin.ModelAdmin):
    protected_delete_hint = ("A site with checkouts, payments or subscriptions is never deleted: they are its money "
                             "history and name it. To give it to someone else, use \u201cTransfer ownership\u201d.")
    list_display = ["slug", "business_name", "status", "owner", "purchase_amount", "monthly_amount", "purchased_at", "created_at"]
    list_filter = ["status", "business_type"]
    search_fields = ["slug", "business_name", "owner__email", "business_email"]
    search_help_text = "Slug, business name (title), owner's email or the business email."
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    # The owner changes only through "Transfer ownership" (it checks the hosting subscription), and
    # the status and purchase facts only through payments and subscriptions (DESIGN: only
    # webhook-confirmed money moves a site forward).
    readonly_fields = ["owner", "created_at", "updated_at"]
    readonly_once_created = [
        "status", "purchased_at", "purchase_transaction_id", "activated_at", "suspended_at", "hosting_nudge_sent_at",
    ]
    date_hierarchy = "created_at"
    inlines = [SiteVersionInline]
    actions = ["transfer_ownership"]
    change_form_template = "admin/sites/site/change_form.html"

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, *(self.readonly_once_created if obj else [])]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<uuid:site_id>/publish/", view(self.publish_view), name="sites_site_publish"),
            path("<uuid:site_id>/transfer/", view(self.transfer_view), name="sites_site_transfer"),
            path("<uuid:site_id>/versions/<int:version_id>/make-current/", view(self.make_current_view),
                 name="sites_site_make_current"),
            *super().get_urls(),
        ]

    # --- Actions and pages ----------------------------------------------------------------------
    @admin.action(description="Transfer ownership of the selected site…", permissions=["change"])
    def transfer_ownership(self, request, queryset):
        sites = list(queryset.values_list("pk", flat=True)[:2])
        if len(sites) != 1:
            self.message_user(request, "Select exactly one site to transfer.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:sites_site_transfer", args=[sites[0]]))

    def _site_for_change(self, request, site_id) -> Site:
        site = get_object_or_404(Site.objects.select_related("owner"), pk=site_id)
        if not self.has_change_permission(request, site):
            raise PermissionDenied
        return site

    def _page(self, request, site, *, title, form, intro="", submit="Save", template="admin/sites/site/action_form.html", **extra):
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": site, "title": title,
            "form": form, "intro": intro, "submit_label": submit, "change_url": reverse("admin:sites_site_change", args=[site.pk]),
            **extra,
        }
        return TemplateResponse(request, template, context)

    def _back_to_site(self, site):
        return HttpResponseRedirect(reverse("admin:sites_site_change", args=[site.pk]))

    def publish_view(self, request, site_id):
        site = self._site_for_change(request, site_id)
        form = PublishVersionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            version = services.site_version_publish(site=site, html=form.cleaned_data["html"], note=form.cleaned_data["note"])
            self.message_user(request, f"Published version {version.number} of {site.slug}; it is now current.", messages.SUCCESS)
            return self._back_to_site(site)
        return self._page(
            request, site, title=f"Publish a new version of {site.slug}", form=form, submit="Publish and make current",
            intro="The new HTML becomes the site's next version and is served at once; older versions stay for roll back.",
        )

    def transfer_view(self, request, site_id):
        site = self._site_for_change(request, site_id)
        form = TransferOwnershipForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            # cast: a valid form found the new owner (clean_email refuses an unknown address).
            new_owner = cast(CustomerUser, form.new_owner)
            try:
                services.site_ownership_transfer(site_id=site.pk, new_owner_id=new_owner.pk, staff_user=request.user)
            except services.TransferRefused as exc:
                self.message_user(request, f"Not transferred: {exc}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{site.slug} now belongs to {new_owner.email} (was {site.owner.email if site.owner else 'nobody'}).",
                    messages.SUCCESS,
                )
                return self._back_to_site(site)
        owner = site.owner.email if site.owner else "nobody"
        return self._page(
            request, site, title=f"Transfer ownership of {site.slug}", form=form, submit="Transfer",
            intro=f"Current owner: {owner}. Payments stay with whoever paid them. A site whose hosting is still billed "
                  "to the current owner cannot be transferred until that subscription is cancelled.",
        )

    def make_current_view(self, request, site_id, version_id):
        site = self._site_for_change(request, site_id)
        version = get_object_or_404(SiteVersion.objects.defer("html"), pk=version_id, site_id=site.pk)
        if request.method == "POST":
            services.site_version_make_current(version=version)
            self.message_user(request, f"Version {version.number} of {site.slug} is now current.", messages.SUCCESS)
            return self._back_to_site(site)
        current = site.versions.filter(is_current=True).values_list("number", flat=True).first()
        return self._page(
            request, site, title=f"Make version {version.number} of {site.slug} current?", form=None, submit="Make it current",
            intro=f"The site will serve version {version.number} ({version.note or 'no note'}) instead of "
                  f"version {current or '—'}. No version is deleted; you can switch back at any time.",
        )


@admin.register(SiteVersion)
class SiteVersionAdmin(admin.ModelAdmin):
    """Read-only list of every version; rolling back is an action (or the button on the site)."""

    list_display = ["site", "number", "is_current", "note", "created_at"]
    list_filter = ["is_current"]
    search_fields = ["site__slug", "note"]
    list_select_related = ["site"]
    raw_id_fields = ["site"]
    actions = ["make_current"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("html")  # large; loaded only on a version's own page

    def has_add_permission(self, request):
        return False  # new HTML goes through the site's "Publish a new version" page

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Make the selected version current (roll back)", permissions=["publish"])
    def make_current(self, request, queryset):
        versions = list(queryset.select_related("site").defer("html").order_by("site_id", "-number"))
        per_site: dict[uuid.UUID, list[SiteVersion]] = {}
        for version in versions:
            per_site.setdefault(version.site_id, []).append(version)
        for site_versions in per_site.values():
            version = site_versions[0]
            if len(site_versions) > 1:
                self.message_user(request, f"{version.site.slug}: several versions selected; choose one.", messages.WARNING)
                continue
            if version.is_current:
                self.message_user(request, f"{version.site.slug}: version {version.number} is already current.", messages.INFO)
                continue
            services.site_version_make_current(version=version)
            self.message_user(request, f"{version.site.slug}: version {version.number} is now current.", messages.SUCCESS)

    def has_publish_permission(self, request):
        return request.user.has_perm("sites.change_site")


class EditRequestAdminForm(forms.ModelForm):
    """Status and note only; the status offers just the moves the workflow allows from here."""

    class Meta:
        model = EditRequest
        fields = ["status", "staff_note"]
        widgets = {"staff_note": forms.Textarea(attrs={"rows": 4})}
        help_texts = {"staff_note": "The owner sees this note in the portal and in the email (required to reject)."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial_status = self.instance.status
        allowed = services.EDIT_REQUEST_TRANSITIONS.get(self.initial_status, frozenset())
        # cast: the model field has choices, so its form field is a ChoiceField.
        cast(forms.ChoiceField, self.fields["status"]).choices = [
            (value, label) for value, label in EditRequest.Status.choices if value == self.initial_status or value in allowed
        ]
        self.fields["status"].error_messages["invalid_choice"] = (
            f"A request that is {self.instance.get_status_display().lower()} can't move to that status."
        )

    def clean(self) -> dict[str, Any]:
        # cast: ModelForm.clean() returns cleaned_data (the stubs allow None for overrides that return nothing).
        cleaned = cast(dict[str, Any], super().clean())
        status, note = cleaned.get("status"), (cleaned.get("staff_note") or "").strip()
        if status == EditRequest.Status.REJECTED and status != self.initial_status and not note:
            self.add_error("staff_note", "Say why the request is rejected: the owner reads the note.")
        return cleaned


def _edit_requests_move(modeladmin, request, queryset, status):
    moved, refused = 0, []
    for edit_request_id in queryset.values_list("pk", flat=True):
        try:
            services.edit_request_transition(edit_request_id=edit_request_id, status=status, staff_user=request.user)
            moved += 1
        except services.EditRequestTransitionRefused as exc:
            refused.append(str(exc))
    if moved:
        modeladmin.message_user(request, f"{moved} request(s) marked {EditRequest.Status(status).label.lower()}; owners are emailed.")
    for message in refused:
        modeladmin.message_user(request, message, messages.ERROR)


@admin.register(EditRequest)
class EditRequestAdmin(admin.ModelAdmin):
    """Staff work owners' change requests. Every status change goes through the service, which
    refuses moves the workflow does not allow and emails the owner once per status."""

    form = EditRequestAdminForm
    list_display = ["id", "site", "requested_by", "status", "created_at", "resolved_at"]
    list_filter = ["status", "created_at", "resolved_at"]
    search_fields = ["site__slug", "site__business_name", "requested_by__email", "description"]
    list_select_related = ["site", "requested_by"]
    date_hierarchy = "created_at"
    readonly_fields = ["site", "requested_by", "description", "created_at", "updated_at", "resolved_at"]
    fields = ["site", "requested_by", "description", "status", "staff_note", "created_at", "updated_at", "resolved_at"]
    actions = ["mark_in_progress", "mark_done"]

    def has_add_permission(self, request):
        return False  # owners ask from the portal

    def save_model(self, request, obj, form, change):
        if obj.status != form.initial_status:
            try:
                services.edit_request_transition(
                    edit_request_id=obj.pk, status=obj.status, staff_note=obj.staff_note, staff_user=request.user
                )
            except services.EditRequestTransitionRefused as exc:  # someone else moved it meanwhile
                self.message_user(request, str(exc), messages.ERROR)
        elif "staff_note" in form.changed_data:
            services.edit_request_note_set(edit_request_id=obj.pk, staff_note=obj.staff_note, staff_user=request.user)

    @admin.action(description="Mark selected requests in progress (emails the owners)", permissions=["change"])
    def mark_in_progress(self, request, queryset):
        _edit_requests_move(self, request, queryset, EditRequest.Status.IN_PROGRESS)

    @admin.action(description="Mark selected requests done (emails the owners)", permissions=["change"])
    def mark_done(self, request, queryset):
        _edit_requests_move(self, request, queryset, EditRequest.Status.DONE)


@admin.register(DomainVerificationRecord)
class DomainVerificationRecordAdmin(admin.ModelAdmin):
    """Read-only: owners add domains in the portal and DNS decides the status. Staff can check now."""

    list_display = ["domain", "site", "status", "last_checked_at", "verified_at", "last_error", "created_at"]
    list_filter = ["status"]
    search_fields = ["domain", "site__slug"]
    list_select_related = ["site"]
    readonly_fields = [
        "site", "domain", "txt_record_name", "txt_record_value", "status", "last_checked_at", "verified_at", "last_error",
        "created_at", "updated_at",
    ]
    actions = ["check_now"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Check DNS now for the selected domains", permissions=["change"])
    def check_now(self, request, queryset):
        for record_id in queryset.values_list("pk", flat=True):
            record = services.domain_check(record_id=record_id)
            if record is not None:
                detail = f" — {record.last_error}" if record.last_error else ""
                self.message_user(request, f"{record.domain}: {record.get_status_display()}{detail}")

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        verified_hosts_forget()  # a deleted verified domain stops serving now, not in a minute

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        verified_hosts_forget()
