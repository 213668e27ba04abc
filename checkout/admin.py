from typing import cast

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, IntegerField, Q, Value, When
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from webmagic.admin import NeverDeleted, ReadOnlyAdmin

from .models import CheckoutSession, Payment, ReconcileRun, Refund, Subscription
from .services import recovery, refunds, staff
from .services.hosting import HostingCancelFailed, HostingCancelUnconfirmed

PERSONAL_DATA = ["customer_name", "customer_email", "ip_address", "user_agent", "referrer"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = ["id", "site", "kind", "status", "customer_email", "amount", "created_at", "reminder_sent_at", "completed_at"]
    list_filter = ["status", "kind", ("reminder_sent_at", admin.EmptyFieldListFilter), "discount_percent"]
    search_fields = ["customer_email", "recurrente_checkout_id", "site__slug", "recovery_code"]
    list_select_related = ["site"]
    date_hierarchy = "created_at"
    raw_id_fields = ["site", "user", "recovered_from"]
    # Personal data is shown, never edited, from admin; so is everything Recurrente or the flow set.
    readonly_fields = [
        *PERSONAL_DATA, "site", "kind", "amount", "currency", "user", "recovered_from", "created_at", "updated_at",
        "recurrente_checkout_id", "checkout_url", "checkout_created_at", "checkout_error", "completed_at", "abandoned_at",
        "expired_at", "last_failure_reason", "last_failure_at", "payment_in_progress_at", "reminder_sent_at",
        "recovery_code", "discount_percent", "next_reconcile_at", "reconcile_checks", "last_reconciled_at",
        "closed_at", "closed_reason",
    ]
    actions = ["send_reminder_now"]

    def has_add_permission(self, request):
        return False  # sessions are made by the purchase flow only

    @admin.action(description="Send the recovery reminder now (same rules as the scan)", permissions=["change"])
    def send_reminder_now(self, request, queryset):
        for session_id, email in queryset.values_list("pk", "customer_email"):
            result = recovery.recovery_reminder_send_now(session_id=session_id)
            label = f"Session {session_id} ({email})"
            if result.outcome == "reminded":
                self.message_user(request, f"{label}: reminder queued.", messages.SUCCESS)
            elif result.outcome == "paid":
                self.message_user(request, f"{label}: no reminder — {result.detail}.", messages.WARNING)
            elif result.outcome == "closed":
                self.message_user(request, f"{label}: no reminder, session closed — {result.detail}.", messages.WARNING)
            else:
                self.message_user(request, f"{label}: no reminder — {result.detail}.", messages.ERROR)


class FlaggedFirst(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged, not refunded, or refund outcome unknown")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(attention_rank=0)
        return queryset


class RefundInline(admin.TabularInline):
    model = Refund
    fk_name = "payment"
    extra = 0
    can_delete = False
    # list is invariant: mypy types `fields` as Django's wider field-groups list, not list[str].
    fields = readonly_fields = [  # type: ignore[assignment]
        "recurrente_refund_id", "status", "source", "customer_refunded_amount", "requested_by", "created_at", "finalized_at",
    ]

    def has_add_permission(self, request, obj=None):
        return False  # refunds are requested with the action, or recorded from the dashboard


@admin.register(Payment)
class PaymentAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = ["recurrente_payment_id", "attention", "site", "kind", "amount", "currency", "status", "paid_at", "user"]
    list_filter = [FlaggedFirst, "status", "flag", "kind", "currency"]
    search_fields = ["recurrente_payment_id", "recurrente_intent_id", "recurrente_checkout_id", "site__slug", "user__email"]
    list_select_related = ["site", "user"]
    date_hierarchy = "paid_at"
    raw_id_fields = ["site", "user", "checkout_session", "subscription"]
    readonly_fields = [
        "recurrente_payment_id", "recurrente_intent_id", "recurrente_checkout_id", "kind", "site", "user",
        "checkout_session", "subscription", "amount", "currency", "status", "payment_method", "card_last4", "paid_at",
        "refunded_at", "recurrente_refund_id", "refund_outcome_unknown_since", "created_at", "updated_at",
    ]
    inlines = [RefundInline]
    actions = ["refund", "refund_outcome_none"]

    def get_queryset(self, request):
        # Flagged payments still holding the money come first, and so do refunds whose outcome is
        # unknown: they are the ones staff must act on.
        needs_attention = (~Q(flag=Payment.Flag.NONE) & Q(status=Payment.Status.SUCCEEDED)) | Q(
            refund_outcome_unknown_since__isnull=False
        )
        # (ModelAdmin.get_queryset orders before we could annotate, hence the manager directly.)
        return Payment._default_manager.annotate(
            attention_rank=Case(When(needs_attention, then=Value(0)), default=Value(1), output_field=IntegerField())
        ).order_by(*self.get_ordering(request))

    def get_ordering(self, request):
        return ["attention_rank", "-paid_at"]

    def has_add_permission(self, request):
        return False  # payments are recorded from Recurrente's confirmations only

    @admin.display(description="Flag", ordering="attention_rank")
    def attention(self, payment):
        if payment.refund_outcome_unknown_since:
            return "Refund outcome unknown: check Recurrente's dashboard"
        if not payment.flag:
            return "—"
        label = payment.get_flag_display()
        return label if payment.status == Payment.Status.SUCCEEDED else f"{label} ({payment.get_status_display().lower()})"

    @admin.action(description="Refund through Recurrente (full amount)", permissions=["change"])
    def refund(self, request, queryset):
        for payment_id in queryset.values_list("pk", flat=True):
            try:
                result = refunds.payment_refund_request(payment_id=payment_id, staff_user=request.user)
            except refunds.RefundRefused as exc:
                self.message_user(request, f"Not refunded: {exc}", messages.WARNING)
            except (refunds.RefundFailed, refunds.RefundOutcomeUnknown) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                done = result.refund is not None and result.refund.status in (Refund.Status.SUCCEEDED, Refund.Status.PENDING)
                self.message_user(request, result.message(), messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Refund outcome checked: no refund was made (seen in Recurrente's dashboard)",
                  permissions=["change"])
    def refund_outcome_none(self, request, queryset):
        for payment_id, reference in queryset.values_list("pk", "recurrente_payment_id"):
            if refunds.payment_refund_outcome_none(payment_id=payment_id, staff_user=request.user):
                self.message_user(request, f"{reference}: recorded that no refund was made; it can be refunded again.",
                                  messages.SUCCESS)
            else:
                self.message_user(request, f"{reference}: no refund with an unknown outcome; nothing changed.", messages.WARNING)


@admin.register(Subscription)
class SubscriptionAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = ["recurrente_subscription_id", "site", "user", "status", "current_period_end", "cancel_requested_at",
                    "last_event_at", "created_at"]
    list_filter = ["status", ("cancel_requested_at", admin.EmptyFieldListFilter)]
    search_fields = ["recurrente_subscription_id", "site__slug", "user__email"]
    list_select_related = ["site", "user"]
    raw_id_fields = ["site", "user", "checkout_session"]
    readonly_fields = [
        "recurrente_subscription_id", "site", "user", "checkout_session", "status", "amount", "currency",
        "current_period_start", "current_period_end", "last_event_at", "cancel_requested_at", "cancelled_at", "reactivated_at",
        "cancellation_inferred",
        "created_at", "updated_at",
    ]
    actions = ["cancel"]

    def has_add_permission(self, request):
        return False  # mirrors Recurrente; rows come from its webhooks

    @admin.action(description="Cancel through Recurrente (site stays live until the paid period ends)", permissions=["change"])
    def cancel(self, request, queryset):
        for subscription_id, reference in queryset.values_list("pk", "recurrente_subscription_id"):
            try:
                subscription = staff.subscription_cancel_by_staff(subscription_id=subscription_id, staff_user=request.user)
            except staff.StaffActionRefused as exc:
                self.message_user(request, f"Not cancelled: {exc}", messages.WARNING)
            except HostingCancelFailed as exc:
                self.message_user(request, f"Recurrente did not cancel {reference}: {exc}. Nothing was changed.", messages.ERROR)
            except HostingCancelUnconfirmed as exc:
                self.message_user(request, f"Not confirmed: {exc}", messages.ERROR)
            else:
                end = subscription.current_period_end
                self.message_user(
                    request, f"Cancelled {reference} at Recurrente; the site stays live until "
                             f"{end:%Y-%m-%d %H:%M} UTC." if end else f"Cancelled {reference} at Recurrente.",
                    messages.SUCCESS,
                )


class UnmatchedFilter(admin.SimpleListFilter):
    title = "matched"
    parameter_name = "unmatched"

    def lookups(self, request, model_admin):
        return [("yes", "Unmatched (no payment)")]

    def queryset(self, request, queryset):
        return queryset.filter(payment__isnull=True) if self.value() == "yes" else queryset


class DashboardRefundForm(forms.Form):
    payment = forms.CharField(label="Payment", max_length=64, help_text="Its Recurrente id (pa_…), as in the Payments list")
    refund_id = forms.CharField(label="Refund id", max_length=64, help_text="The refund's id in Recurrente's dashboard (re_…)")

    def clean_payment(self):
        reference = self.cleaned_data["payment"].strip()
        payment = Payment.objects.filter(recurrente_payment_id=reference).first()
        if payment is None:
            raise forms.ValidationError("No payment with this Recurrente id.")
        return payment


@admin.register(Refund)
class RefundAdmin(NeverDeleted, admin.ModelAdmin):
    """Read-only: every change comes from Recurrente's answers (request, poll, webhook) or from
    "Record a dashboard refund", which reads the refund from Recurrente first."""

    list_display = ["recurrente_refund_id", "payment", "status", "source", "customer_refunded_amount", "currency",
                    "requested_by", "created_at", "finalized_at"]
    list_filter = [UnmatchedFilter, "status", "source"]
    search_fields = ["recurrente_refund_id", "payment__recurrente_payment_id", "payment__site__slug"]
    list_select_related = ["payment", "requested_by"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Refund._meta.fields]
    actions = ["check_now"]

    def has_add_permission(self, request):
        return False  # recorded through the "record" view below, which asks Recurrente first

    def get_urls(self):
        record = path("record/", self.admin_site.admin_view(self.record_view), name="checkout_refund_record")
        return [record, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "record_url": reverse("admin:checkout_refund_record")}
        return super().changelist_view(request, extra_context=extra_context)

    def record_view(self, request):
        """Staff record a refund made in Recurrente's dashboard, with the same effects as any refund."""
        if not self.has_change_permission(request):
            return redirect("admin:checkout_refund_changelist")
        form = DashboardRefundForm(request.POST or None, initial={"payment": request.GET.get("payment", "")})
        if request.method == "POST" and form.is_valid():
            try:
                refund = refunds.refund_record_from_dashboard(
                    payment_id=form.cleaned_data["payment"].pk, refund_id=form.cleaned_data["refund_id"], staff_user=request.user,
                )
            except (refunds.RefundRefused, refunds.RefundFailed) as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Recorded {refund.recurrente_refund_id} ({refund.get_status_display().lower()}) "
                                           # cast: a refund recorded from the dashboard names its payment.
                                           f"for {cast(Payment, refund.payment).recurrente_payment_id}.", messages.SUCCESS)
                return redirect("admin:checkout_refund_changelist")
        context = {**self.admin_site.each_context(request), "title": "Record a refund made in Recurrente's dashboard",
                   "form": form, "opts": self.model._meta}
        return TemplateResponse(request, "admin/checkout/refund_record.html", context)

    @admin.action(description="Check now with Recurrente", permissions=["change"])
    def check_now(self, request, queryset):
        pending = list(queryset.filter(status=Refund.Status.PENDING).values_list("pk", flat=True))
        Refund.objects.filter(pk__in=pending).update(next_check_at=timezone.now())
        result = refunds.refunds_poll(limit=len(pending), only=pending) if pending else refunds.PollResult()
        self.message_user(request, f"Asked Recurrente about {result.checked} pending refund(s): {len(result.finalized)} "
                                   f"became final, {result.errors} could not be read (asked again later).", messages.INFO)


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    """What each reconcile pass asked and found; written by the pass, pruned after 14 days."""

    list_display = ["started_at", "checkouts_checked", "payments_found", "subscriptions_checked", "subscriptions_changed",
                    "refunds_checked", "refunds_finalized", "errors", "stopped_early"]
    date_hierarchy = "started_at"
