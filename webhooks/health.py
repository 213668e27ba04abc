"""The payments health page's reads (DESIGN §8): is money flowing, and if not, what to do.

It reads several apps (webhooks, checkout, webmagic), so it lives in webhooks, the top layer:
checkout and webmagic must never import it. Every read is one query whatever the number of rows
(aggregates, or a short capped list), so the page's cost is fixed.

Each section gets a `Verdict`: ok, warning (look soon) or problem (act now), with one sentence
saying what the state means and one saying what to do about it.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Case, Count, F, IntegerField, Q, Value, When

from checkout.models import CHECKOUT_RECONCILED_STATUSES, CheckoutSession, Payment, ReconcileRun, Refund
from webmagic.alerts import HEARTBEAT_STALE_AFTER, HEARTBEAT_WORKER, TRANSACTIONAL_KINDS, heartbeat_status
from webmagic.models import EmailLog, Heartbeat, StaffAlert

from . import selectors
from .models import WebhookEvent, WebhookRejection
from .rejections import ALERTING_REASONS

OK, WARNING, PROBLEM = "ok", "warning", "problem"
STATUS_LABELS = {OK: "OK", WARNING: "Warning", PROBLEM: "Problem"}
_SEVERITY = {OK: 0, WARNING: 1, PROBLEM: 2}

DELIVERY_WINDOW = timedelta(hours=24)
REJECTIONS_SHORT = timedelta(hours=24)
REJECTIONS_LONG = timedelta(days=7)
# The reconciler runs every 5 minutes: three missed runs mean beat or the worker is not running it.
RECONCILE_STALE_AFTER = timedelta(minutes=15)
REFUND_PENDING_TOO_LONG = timedelta(days=1)
EMAIL_WINDOW = timedelta(hours=24)
ALERT_WINDOW = timedelta(hours=24)
RECENT_ALERTS = 10
# Rows listed under a count; the count itself is exact, the changelist link shows them all.
LISTED_ROWS = 5
FINDINGS_SHOWN = 20

FLAGGED_HOLDING = (Payment.Flag.NEEDS_REFUND, Payment.Flag.AMOUNT_MISMATCH)

# What to do for each rejection reason (the model's labels say what each one usually means).
REASON_FIXES: dict[str, str] = {
    WebhookRejection.Reason.BAD_SIGNATURE: "Copy the endpoint's current whsec_ signing secret from Recurrente's "
    "dashboard into RECURRENTE_WEBHOOK_SECRETS; during a rotation list old and new, comma-separated.",
    WebhookRejection.Reason.NO_SECRET: "Set RECURRENTE_WEBHOOK_SECRETS to the endpoint's whsec_ signing secret "
    "from Recurrente's dashboard.",
    WebhookRejection.Reason.MISSING_HEADERS: "Check the proxy or WAF in front of the app: it must pass the svix-* "
    "headers through. Otherwise the sender is not Recurrente.",
    WebhookRejection.Reason.STALE_TIMESTAMP: "Check the server clock (NTP): we accept 5 minutes either way. "
    "A few of these alone may be replays, which are rightly refused.",
    WebhookRejection.Reason.FUTURE_TIMESTAMP: "Check the server clock (NTP): we accept 5 minutes either way.",
    WebhookRejection.Reason.MALFORMED_BODY: "Check the proxy or WAF in front of the app: it must not rewrite "
    "bodies. Otherwise the sender is not Recurrente.",
    WebhookRejection.Reason.OVERSIZED_BODY: "Check the proxy in front of the app, or raise WEBHOOK_MAX_BODY_BYTES "
    "if Recurrente really sends events this large.",
    WebhookRejection.Reason.OTHER_MODE: "Make RECURRENTE_LIVE_MODE match the key (sk_live_ → True, sk_test_ → "
    "False), then reprocess the ignored events from Webhook events.",
}


@dataclass(frozen=True)
class Verdict:
    status: str
    summary: str  # what the state means
    advice: str = ""  # what to do; empty when nothing

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class RejectionRow:
    reason: str
    label: str
    fix: str
    last_day: int
    last_week: int


@dataclass(frozen=True)
class FailedEmails:
    kind: str
    label: str
    count: int
    transactional: bool


@dataclass(frozen=True)
class PaymentsHealth:
    now: datetime
    deliveries: Verdict
    last_delivery: WebhookEvent | None
    rejections: Verdict
    rejection_rows: list[RejectionRow]
    rejections_short_since: datetime
    rejections_long_since: datetime
    reconciler: Verdict
    last_run: ReconcileRun | None
    run_findings: list[str]
    more_findings: int
    open_checkouts: int
    refunds: Verdict
    unmatched_refunds: int
    stale_pending_refunds: int
    listed_refunds: list[Refund]
    payments: Verdict
    disputed_payments: int
    flagged_payments: int
    listed_payments: list[Payment]
    emails: Verdict
    failed_emails: list[FailedEmails]
    emails_since: datetime
    worker: Verdict
    heartbeat: str
    beat_at: datetime | None
    alerts: Verdict
    recent_alerts: list[StaffAlert] = field(default_factory=list)

    @property
    def verdicts(self) -> list[Verdict]:
        return [self.deliveries, self.rejections, self.reconciler, self.refunds, self.payments, self.emails,
                self.worker, self.alerts]

    @property
    def overall(self) -> Verdict:
        worst = max((v.status for v in self.verdicts), key=_SEVERITY.__getitem__)
        counts = {status: sum(v.status == status for v in self.verdicts) for status in (PROBLEM, WARNING)}
        if worst == OK:
            return Verdict(OK, "Every check below is fine: payments are flowing.")
        parts = [f"{counts[PROBLEM]} problem(s)"] if counts[PROBLEM] else []
        parts += [f"{counts[WARNING]} warning(s)"] if counts[WARNING] else []
        return Verdict(worst, f"{' and '.join(parts)} below: start with the sections marked Problem.")


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _ago(delta: timedelta) -> str:
    minutes = _minutes(delta)
    if minutes < 120:
        return f"{minutes} minutes"
    if minutes < 48 * 60:
        return f"{minutes // 60} hours"
    return f"{minutes // (24 * 60)} days"


# --- 1. Webhook deliveries ---------------------------------------------------------------------

def deliveries_verdict(*, last: WebhookEvent | None, now: datetime) -> Verdict:
    advice = "Check Recurrente's webhook settings (endpoint URL, enabled, events); reconciliation keeps payments " \
             "flowing meanwhile."
    if last is None:
        return Verdict(WARNING, "No webhook delivery has ever been accepted.", advice)
    if last.received_at < now - DELIVERY_WINDOW:
        return Verdict(WARNING, f"No webhook delivery accepted in the last 24 hours (the last was "
                                f"{_ago(now - last.received_at)} ago).", advice)
    return Verdict(OK, "Recurrente's deliveries are reaching us.")


# --- 2. Rejected deliveries --------------------------------------------------------------------

def rejection_rows(*, short: dict[str, int], long: dict[str, int]) -> list[RejectionRow]:
    labels = dict(WebhookRejection.Reason.choices)
    reasons = sorted(set(short) | set(long), key=lambda reason: (-short.get(reason, 0), -long.get(reason, 0), reason))
    return [
        RejectionRow(reason=reason, label=labels.get(reason, reason), fix=REASON_FIXES.get(reason, ""),
                     last_day=short.get(reason, 0), last_week=long.get(reason, 0))
        for reason in reasons
    ]


def rejections_verdict(*, rows: list[RejectionRow], last: WebhookEvent | None, now: datetime) -> Verdict:
    last_day = sum(row.last_day for row in rows)
    if not last_day:
        week = sum(row.last_week for row in rows)
        return Verdict(OK, f"No delivery refused in the last 24 hours ({week} in the last 7 days)." if week
                       else "No delivery refused in the last 7 days.")
    serious = sum(row.last_day for row in rows if row.reason in ALERTING_REASONS)
    if not serious:
        # Only what any scanner sends (no Svix headers, huge bodies): counted, nothing to fix.
        return Verdict(OK, f"{last_day} request(s) without Svix headers or with oversized bodies in the last 24 hours: "
                           "what scanners send. Nothing to do unless real deliveries stop too (see above).")
    last_day = serious
    advice = "Fix the cause given for each reason below; Svix retries a refused delivery for about 28 hours, " \
             "then gives up, and disables the endpoint after 5 days of failures."
    if last is None or last.received_at < now - REJECTIONS_SHORT:
        # Refusals and no acceptance: likely every real delivery is refused (wrong secret or mode).
        return Verdict(PROBLEM, f"{last_day} deliveries refused in the last 24 hours and none accepted: Recurrente's "
                                "news is probably not getting through.", advice)
    return Verdict(WARNING, f"{last_day} deliveries refused in the last 24 hours (others were accepted).", advice)


# --- 3. The reconciler -------------------------------------------------------------------------

def reconciler_verdict(*, run: ReconcileRun | None, now: datetime) -> Verdict:
    restart = "Start or restart the Celery worker and beat, and check that the reconcile periodic task is enabled."
    if run is None:
        return Verdict(PROBLEM, "The reconciler has never run: payments that webhooks miss are not being found.", restart)
    if run.started_at < now - RECONCILE_STALE_AFTER:
        state = "has been running" if run.finished_at is None else "ran"
        return Verdict(WARNING, f"The reconciler last {state} {_ago(now - run.started_at)} ago (it should run every "
                                "5 minutes): beat or the worker may be down.", restart)
    if run.stopped_early:
        if "time budget" in run.stopped_early or "429" in run.stopped_early:
            # Transient: the next run (5 minutes later) carries on where this one stopped.
            return Verdict(WARNING, f"The last run stopped early: {run.stopped_early}.",
                           "Nothing yet: what is left waits for the next run. If this repeats, the backlog is "
                           "growing or Recurrente is limiting us.")
        fix = "Put the current secret key from Recurrente's dashboard in RECURRENTE_SECRET_KEY and restart the app." \
            if "401" in run.stopped_early else "Fix what the message names."
        return Verdict(PROBLEM, f"The last run stopped early: {run.stopped_early}.",
                       f"{fix} Until then open payments are not checked with Recurrente.")
    if run.errors:
        return Verdict(WARNING, f"The last run had {run.errors} failed call(s); those are asked again later.",
                       "If this repeats, check Recurrente's status and our network.")
    return Verdict(OK, "The reconciler is running and asking Recurrente about open payments.")


# --- 4. Refunds --------------------------------------------------------------------------------

def refunds_verdict(*, unmatched: int, stale_pending: int) -> Verdict:
    if unmatched:
        return Verdict(PROBLEM, f"{unmatched} refund(s) reported by Recurrente match no payment of ours.",
                       "Find each in Recurrente's dashboard and link it with “Record a dashboard refund” (the "
                       "payment's pa_ id and the refund's re_ id).")
    if stale_pending:
        return Verdict(WARNING, f"{stale_pending} refund(s) pending for more than a day.",
                       "Select them in Refunds and use “Check now with Recurrente”; ask Recurrente's support if "
                       "they stay pending.")
    return Verdict(OK, "Every refund is matched to its payment, none pending for more than a day.")


# --- 5. Disputed and flagged payments ----------------------------------------------------------

def payments_verdict(*, disputed: int, flagged: int) -> Verdict:
    refund = "Check each flagged payment, then refund it with the “Refund through Recurrente” action."
    if disputed:
        answer = "Answer each dispute in Recurrente's dashboard with the receipt and the site delivered."
        return Verdict(PROBLEM, f"{disputed} payment(s) disputed (chargeback) and not refunded"
                                + (f"; {flagged} more flagged for a refund." if flagged else "."),
                       f"{answer} {refund}" if flagged else answer)
    if flagged:
        return Verdict(WARNING, f"{flagged} flagged payment(s) (needs refund or amount mismatch) still hold the "
                                "customer's money.", refund)
    return Verdict(OK, "No disputed payment, and no flagged payment waiting for a refund.")


# --- 6. Emails ---------------------------------------------------------------------------------

def emails_verdict(*, failed: list[FailedEmails]) -> Verdict:
    total = sum(row.count for row in failed)
    if not total:
        return Verdict(OK, "No email failed in the last 24 hours.")
    advice = "Read the error on each failed email; a wrong provider key or sender domain fails them all. " \
             "Customers waiting for a receipt or a password link may need one by hand."
    if any(row.transactional for row in failed):
        return Verdict(PROBLEM, f"{total} email(s) failed in the last 24 hours, customer emails among them.", advice)
    return Verdict(WARNING, f"{total} email(s) failed in the last 24 hours (no customer receipts or links).", advice)


# --- 7. The worker heartbeat -------------------------------------------------------------------

def worker_verdict(*, state: str, beat_at: datetime | None, now: datetime) -> Verdict:
    advice = "Start or restart the Celery worker and beat; webhooks and emails wait meanwhile."
    if state == "never":
        return Verdict(PROBLEM, "No worker heartbeat has ever been recorded.", advice)
    if state != "ok":
        age = f" (last beat {_ago(now - beat_at)} ago)" if beat_at else ""
        return Verdict(PROBLEM, f"The worker heartbeat is stale{age}: queued work is not running.",
                       advice + " A long queue backlog also lets the heartbeat go stale.")
    return Verdict(OK, f"The worker is running (its heartbeat goes stale after "
                       f"{_minutes(HEARTBEAT_STALE_AFTER)} minutes).")


# --- 8. Staff alerts ---------------------------------------------------------------------------

def alerts_verdict(*, recent: list[StaffAlert], now: datetime) -> Verdict:
    fresh = [alert for alert in recent if alert.fired_at >= now - ALERT_WINDOW]
    if fresh:
        return Verdict(WARNING, f"{len(fresh)} alert(s) raised in the last 24 hours.",
                       "Open each alert for its details and what to check; an alert repeats at most once an hour "
                       "while its cause lasts.")
    return Verdict(OK, "No staff alert in the last 24 hours.")


# --- The page ----------------------------------------------------------------------------------

def payments_health(*, now: datetime) -> PaymentsHealth:
    """Everything the payments health page shows, in a fixed number of queries."""
    last = selectors.last_accepted_delivery()

    short_since, long_since = now - REJECTIONS_SHORT, now - REJECTIONS_LONG
    rows = rejection_rows(short=selectors.rejections_by_reason(since=short_since),
                          long=selectors.rejections_by_reason(since=long_since))

    run = ReconcileRun.objects.order_by("-started_at", "-pk").first()
    findings = [line for line in (run.findings.splitlines() if run else []) if line.strip()]
    open_checkouts = CheckoutSession.objects.filter(status__in=CHECKOUT_RECONCILED_STATUSES, next_reconcile_at__isnull=False).count()

    unmatched_q = Q(payment__isnull=True)
    stale_q = Q(status=Refund.Status.PENDING, created_at__lt=now - REFUND_PENDING_TOO_LONG)
    refund_counts = Refund.objects.aggregate(unmatched=Count("pk", filter=unmatched_q), stale=Count("pk", filter=stale_q))
    listed_refunds = list(
        # Unmatched first (they need staff), then the longest pending.
        Refund.objects.filter(unmatched_q | stale_q).select_related("payment")
        .order_by(F("payment_id").asc(nulls_first=True), "created_at", "pk")[:LISTED_ROWS]
    )

    disputed_q = Q(flag=Payment.Flag.DISPUTED, status=Payment.Status.SUCCEEDED)
    flagged_q = Q(flag__in=FLAGGED_HOLDING, status=Payment.Status.SUCCEEDED)
    payment_counts = Payment.objects.aggregate(disputed=Count("pk", filter=disputed_q), flagged=Count("pk", filter=flagged_q))
    listed_payments: list[Payment] = list(
        # Disputes first: they have a deadline at Recurrente.
        Payment.objects.filter(disputed_q | flagged_q).select_related("site")
        .annotate(rank=Case(When(flag=Payment.Flag.DISPUTED, then=Value(0)), default=Value(1), output_field=IntegerField()))
        .order_by("rank", "-paid_at", "-pk")[:LISTED_ROWS]
    )

    emails_since = now - EMAIL_WINDOW
    kind_labels = dict(EmailLog.Kind.choices)
    # updated_at: when it failed (an email queued days ago can fail today), as the alert rules count them.
    failed = [
        FailedEmails(kind=kind, label=kind_labels.get(kind, kind), count=count, transactional=kind in TRANSACTIONAL_KINDS)
        for kind, count in EmailLog.objects.filter(status=EmailLog.Status.FAILED, updated_at__gte=emails_since)
        .order_by().values("kind").annotate(count=Count("pk")).order_by("-count", "kind").values_list("kind", "count")
    ]

    beat_at = Heartbeat.objects.filter(name=HEARTBEAT_WORKER).values_list("beat_at", flat=True).first()
    state = heartbeat_status(now=now)

    recent_alerts = list(
        StaffAlert.objects.only("kind", "subject", "fired_at").order_by("-fired_at", "-pk")[:RECENT_ALERTS]
    )

    return PaymentsHealth(
        now=now,
        deliveries=deliveries_verdict(last=last, now=now),
        last_delivery=last,
        rejections=rejections_verdict(rows=rows, last=last, now=now),
        rejection_rows=rows,
        rejections_short_since=short_since,
        rejections_long_since=long_since,
        reconciler=reconciler_verdict(run=run, now=now),
        last_run=run,
        run_findings=findings[:FINDINGS_SHOWN],
        more_findings=max(len(findings) - FINDINGS_SHOWN, 0),
        open_checkouts=open_checkouts,
        refunds=refunds_verdict(unmatched=refund_counts["unmatched"], stale_pending=refund_counts["stale"]),
        unmatched_refunds=refund_counts["unmatched"],
        stale_pending_refunds=refund_counts["stale"],
        listed_refunds=listed_refunds,
        payments=payments_verdict(disputed=payment_counts["disputed"], flagged=payment_counts["flagged"]),
        disputed_payments=payment_counts["disputed"],
        flagged_payments=payment_counts["flagged"],
        listed_payments=listed_payments,
        emails=emails_verdict(failed=failed),
        failed_emails=failed,
        emails_since=emails_since,
        worker=worker_verdict(state=state, beat_at=beat_at, now=now),
        heartbeat=state,
        beat_at=beat_at,
        alerts=alerts_verdict(recent=recent_alerts, now=now),
        recent_alerts=recent_alerts,
    )
