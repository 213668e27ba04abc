"""Reconciliation: Recurrente is the source of truth (DESIGN §8).

Webhooks can be missing (test keys may send none), rejected (a wrong secret) or late. Every five
minutes `reconcile_pass` asks Recurrente's API about:

- every checkout that could still be paid (`checkout_created` or `abandoned`, whatever its reminder
  state), on a per-session back-off: 2, 5, 15 and 60 minutes after the checkout was created, then
  hourly until it expires (a bank transfer in progress keeps it open for two more days). Calls
  stay proportional to open sessions, and the due query reads a partial index of open sessions
  only, so closed ones cost nothing. A checkout found paid is recorded through
  `confirmations.payment_confirmed_record`, the webhook's own path (same locks, same exactly-once
  payment row, same emails and conflict handling), so a later webhook for it is a no-op;
- live subscriptions (pending, active, past due, paused), at least daily, through
  `subscriptions.subscription_refresh`, which never lets older news overwrite newer state;
- pending refunds (`refunds.refunds_poll`).

A pass is bounded (batch sizes and a time budget well inside the task's time limit); what is left
waits for the next one. One failing call never stops the others: that row is asked again later
and nothing of ours changes. A 401 (our key is wrong) or a 429 (we are asking too fast) stops the
pass, since every further call would fail the same way.
"""

import enum
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from checkout.clients import recurrente_client
from checkout.ledger import Outcome
from checkout.models import (
    CHECKOUT_RECONCILED_STATUSES,
    SUBSCRIPTION_RECONCILED_STATUSES,
    CheckoutSession,
    ReconcileRun,
    Subscription,
)
from checkout.recurrente import (
    JsonObject,
    RecurrenteAuthError,
    RecurrenteError,
    RecurrenteNotFound,
    RecurrenteUnavailable,
)
from checkout.recurrente_data import PayloadError, checkout_status_of, payment_confirmation_from_checkout

from . import confirmations, payments, refunds, subscriptions
from .sessions import RECONCILE_FIRST_LOOK_MINUTES, checkout_lifetime

logger = logging.getLogger(__name__)

# Minutes after checkout creation at which an open checkout is asked about; hourly after that.
SCHEDULE_MINUTES = (RECONCILE_FIRST_LOOK_MINUTES, 5, 15, 60)
EVERY_AFTER = timedelta(hours=1)
# A payment made in the checkout's last minutes is still found by one look after it expires.
EXPIRY_GRACE = timedelta(minutes=15)
BANK_TRANSFER_GRACE = timedelta(days=2)  # Recurrente: a transfer can take up to a day
ERROR_RETRY = timedelta(minutes=5)
# A claimed session is due again after this if the pass that claimed it died mid-call.
CLAIM_LEASE = timedelta(minutes=5)
# The success page may ask for an immediate check; at most this often per session.
NUDGE_MIN_INTERVAL = timedelta(seconds=15)
SUBSCRIPTION_EVERY = timedelta(hours=20)  # "at least daily", with room for a late tick
# At 50 ms a call the time budget allows ~1,500; a slower Recurrente is cut by the budget instead.
# 1,000 every 5 minutes keeps up with ~10,000 open checkouts (about 1.15 looks each an hour).
CHECKOUT_BATCH = 1000
SUBSCRIPTION_BATCH = 100
REFUND_BATCH = 100
# Inside CELERY_TASK_SOFT_TIME_LIMIT (120 s) even when every call takes the 10 s read timeout.
TIME_BUDGET_SECONDS = 90
OPEN_STATUSES = CHECKOUT_RECONCILED_STATUSES
RUN_RETENTION = timedelta(days=14)
LEFT_COUNT_CAP = 10_000


class CheckResult(enum.StrEnum):
    PAID = "paid"  # paid, and recorded by this check (no webhook had done it)
    ALREADY_RECORDED = "already_recorded"  # paid, and a webhook had recorded it
    IN_PROGRESS = "in_progress"
    UNPAID = "unpaid"
    EXPIRED = "expired"
    UNKNOWN_AT_RECURRENTE = "unknown_at_recurrente"
    ERROR = "error"  # could not ask or could not read the answer: asked again later
    NOT_DUE = "not_due"  # another pass has it, or it is closed


class PassStopped(Exception):
    """Every further call would fail the same way (bad key, rate limit)."""


# --- One checkout ----------------------------------------------------------------------------

def checkout_answer_apply(*, session: CheckoutSession, answer: JsonObject) -> CheckResult:
    """Apply what `GET /checkouts/{id}` says about one of our sessions. Shared by the reconciler
    and the recovery scan's pre-send check. Raises PayloadError for a paid checkout we cannot read."""
    status = checkout_status_of(answer)
    if status == "paid":
        confirmation = payment_confirmation_from_checkout(answer)
        if confirmation.checkout_id != session.recurrente_checkout_id:
            raise PayloadError(f"asked about checkout {session.recurrente_checkout_id}, got {confirmation.checkout_id}")
        outcome = confirmations.payment_confirmed_record(confirmation=confirmation)
        if outcome == Outcome.DUPLICATE:
            return CheckResult.ALREADY_RECORDED
        # Whether a webhook follows is judged a little later (webhooks.alerts): right after the
        # buyer pays, the success page's look often simply beats the webhook home.
        logger.warning("session %s: checkout %s was paid (%s) and no webhook had recorded it; recorded as %s",
                       session.pk, session.recurrente_checkout_id, confirmation.payment_id, outcome)
        return CheckResult.PAID
    # cast (here and below): Recurrente answered about this session's checkout, so it has an id.
    if status == "payment_in_progress":
        payments.checkout_payment_in_progress_record(checkout_id=cast(str, session.recurrente_checkout_id))
        return CheckResult.IN_PROGRESS
    if status == "unpaid":
        if session.payment_in_progress_at:
            # The transfer we were waiting for did not arrive and the checkout is payable again.
            payments.checkout_payment_failure_record(
                checkout_id=cast(str, session.recurrente_checkout_id), reason="The bank transfer did not go through.",
                bank_transfer=True,
            )
        return CheckResult.UNPAID
    if status == "expired":
        return CheckResult.EXPIRED
    logger.warning("session %s: Recurrente reports an unknown status %r for checkout %s; asking again later",
                   session.pk, str(answer.get("status"))[:40], session.recurrente_checkout_id)
    return CheckResult.ERROR


def checkout_session_reconcile(*, session_id: uuid.UUID | str, now: datetime | None = None, nudge: bool = False) -> CheckResult:
    """Ask Recurrente about one open session and apply the answer. The session is claimed with a
    conditional UPDATE first, so two passes (or a pass and a nudge) never ask about it at once.
    `nudge`: asked for by the success page, ahead of the schedule (at most every 15 s).
    Raises PassStopped on 401/429."""
    now = now or timezone.now()
    open_session = Q(pk=session_id, status__in=OPEN_STATUSES, next_reconcile_at__isnull=False)
    if nudge:
        claim = open_session & (Q(last_reconciled_at__isnull=True) | Q(last_reconciled_at__lt=now - NUDGE_MIN_INTERVAL))
    else:
        claim = open_session & Q(next_reconcile_at__lte=now)
    if not CheckoutSession.objects.filter(claim).update(next_reconcile_at=now + CLAIM_LEASE, last_reconciled_at=now):
        return CheckResult.NOT_DUE
    session = CheckoutSession.objects.get(pk=session_id)
    try:
        # cast: an open session has its checkout's id (the checkout_created_has_checkout_id constraint).
        answer = recurrente_client().get_checkout(cast(str, session.recurrente_checkout_id))
    except RecurrenteNotFound:
        logger.warning("session %s: Recurrente does not know checkout %s; no longer asked", session.pk,
                       session.recurrente_checkout_id)
        _schedule(session=session, now=now, next_at=None)
        return CheckResult.UNKNOWN_AT_RECURRENTE
    except RecurrenteAuthError as exc:
        _schedule(session=session, now=now, next_at=now + ERROR_RETRY, counted=False)
        raise PassStopped("Recurrente refused our API key (HTTP 401): check RECURRENTE_SECRET_KEY") from exc
    except RecurrenteUnavailable as exc:
        _schedule(session=session, now=now, next_at=_retry_at(session=session, now=now), counted=False)
        if exc.status == 429:
            raise PassStopped("Recurrente asked us to slow down (HTTP 429)") from exc
        logger.warning("session %s: could not ask about checkout %s (%s); asking again later", session.pk,
                       session.recurrente_checkout_id, type(exc).__name__)
        return CheckResult.ERROR
    except (RecurrenteError, ValueError) as exc:
        logger.warning("session %s: asking about checkout %s failed (%s); asking again later", session.pk,
                       session.recurrente_checkout_id, type(exc).__name__)
        _schedule(session=session, now=now, next_at=_retry_at(session=session, now=now), counted=False)
        return CheckResult.ERROR
    try:
        result = checkout_answer_apply(session=session, answer=answer)
    except Exception:
        # A paid checkout we cannot read or record: nothing was changed (the fulfilment transaction
        # rolled back); the webhook path and the next look try again, and the log tells staff.
        logger.exception("session %s: applying Recurrente's answer for checkout %s failed", session.pk,
                         session.recurrente_checkout_id)
        result = CheckResult.ERROR
    if result in (CheckResult.PAID, CheckResult.ALREADY_RECORDED, CheckResult.EXPIRED):
        next_at = None  # nothing more can happen to this checkout
    else:
        session.refresh_from_db(fields=["payment_in_progress_at", "checkout_created_at", "created_at"])
        next_at = checkout_next_check(session=session, now=now)
        if result == CheckResult.ERROR and next_at is not None:
            next_at = min(next_at, now + ERROR_RETRY)  # soon, but never past the checkout's end
    _schedule(session=session, now=now, next_at=next_at)
    return result


def checkout_next_check(*, session: CheckoutSession, now: datetime) -> datetime | None:
    """The back-off: the next scheduled look after `now`, or None once the checkout can no longer
    be paid (one last look is made just after it expires)."""
    start = session.checkout_created_at or session.created_at
    ends = start + checkout_lifetime() + EXPIRY_GRACE
    if session.payment_in_progress_at:
        ends = max(ends, session.payment_in_progress_at + BANK_TRANSFER_GRACE)
    if now >= ends:
        return None
    for minutes in SCHEDULE_MINUTES:
        due = start + timedelta(minutes=minutes)
        if due > now:
            return min(due, ends)
    return min(now + EVERY_AFTER, ends)


def _retry_at(*, session: CheckoutSession, now: datetime) -> datetime | None:
    """After a failed call: again in a few minutes, but never past the checkout's last look
    (a checkout Recurrente keeps failing on must not be asked about forever)."""
    next_at = checkout_next_check(session=session, now=now)
    return None if next_at is None else min(next_at, now + ERROR_RETRY)


def _schedule(*, session: CheckoutSession, now: datetime, next_at: datetime | None, counted: bool = True) -> None:
    changes: dict[str, object] = {"next_reconcile_at": next_at, "updated_at": now}
    if counted:
        changes["reconcile_checks"] = F("reconcile_checks") + 1
    CheckoutSession.objects.filter(pk=session.pk).update(**changes)


# --- Subscriptions ---------------------------------------------------------------------------

def subscriptions_reconcile(*, now: datetime, limit: int, stop_at: float, findings: list[str]) -> tuple[int, int, int]:
    """Read each live subscription from Recurrente at least daily and apply what changed.
    Returns (checked, changed, errors)."""
    checked = changed = errors = 0
    due = list(
        Subscription.objects.filter(status__in=SUBSCRIPTION_RECONCILED_STATUSES)
        .filter(Q(last_reconciled_at__isnull=True) | Q(last_reconciled_at__lte=now - SUBSCRIPTION_EVERY))
        .order_by(F("last_reconciled_at").asc(nulls_first=True))
        .values_list("pk", "recurrente_subscription_id", "last_reconciled_at")[:limit]
    )
    for pk, su_id, last in due:
        if time.monotonic() > stop_at:
            break
        if not Subscription.objects.filter(pk=pk, last_reconciled_at=last).update(last_reconciled_at=now):
            continue  # another pass took it
        checked += 1
        before = Subscription.objects.values_list("status", "current_period_end").get(pk=pk)
        try:
            outcome = subscriptions.subscription_refresh(subscription_id=su_id)
        except RecurrenteAuthError as exc:
            Subscription.objects.filter(pk=pk).update(last_reconciled_at=last)
            raise PassStopped("Recurrente refused our API key (HTTP 401): check RECURRENTE_SECRET_KEY") from exc
        except Exception as exc:
            errors += 1
            logger.warning("subscription %s: reconciling failed (%s); asking again later", su_id, type(exc).__name__)
            # Due again after ERROR_RETRY instead of a day later.
            Subscription.objects.filter(pk=pk).update(last_reconciled_at=now - SUBSCRIPTION_EVERY + ERROR_RETRY)
            continue
        after = Subscription.objects.values_list("status", "current_period_end").get(pk=pk)
        if after != before:
            changed += 1
            findings.append(f"subscription {su_id}: {before[0]} → {after[0]}"
                            + (f", paid until {after[1]:%Y-%m-%d}" if after[1] and after[1] != before[1] else ""))
        elif outcome == Outcome.UNKNOWN_SUBSCRIPTION:
            findings.append(f"subscription {su_id}: Recurrente does not know it or answered an unknown status")
    return checked, changed, errors


# --- The pass --------------------------------------------------------------------------------

@dataclass
class ReconcileReport:
    run: ReconcileRun
    results: dict[str, int] = field(default_factory=dict)  # CheckResult -> count

    def lines(self) -> list[str]:
        run = self.run
        lines = [
            f"checkouts asked about: {run.checkouts_checked} ("
            + (", ".join(f"{name}: {count}" for name, count in sorted(self.results.items())) or "none due") + ")",
            f"payments found that no webhook had recorded: {run.payments_found}",
            f"subscriptions read: {run.subscriptions_checked}, changed: {run.subscriptions_changed}",
            f"pending refunds read: {run.refunds_checked}, now final: {run.refunds_finalized}",
            f"failed calls (asked again later): {run.errors}",
        ]
        if run.left_for_next_run:
            lines.append(f"left for the next run: {run.left_for_next_run}")
        if run.stopped_early:
            lines.append(f"stopped early: {run.stopped_early}")
        lines.extend(f"- {finding}" for finding in run.findings.splitlines() if finding)
        return lines


def reconcile_due_queryset(*, now: datetime) -> QuerySet[CheckoutSession]:
    """Open checkouts whose next look is due, oldest first. `status IN (…)` and `IS NOT NULL` are
    the partial index's own predicate, so PostgreSQL reads only open sessions."""
    return CheckoutSession.objects.filter(
        status__in=OPEN_STATUSES, next_reconcile_at__isnull=False, next_reconcile_at__lte=now
    ).order_by("next_reconcile_at")


def reconcile_due_sessions(*, now: datetime, limit: int) -> list[uuid.UUID]:
    return list(reconcile_due_queryset(now=now).values_list("pk", flat=True)[:limit])


def reconcile_pass(
    *, now: datetime | None = None, checkout_batch: int = CHECKOUT_BATCH, budget_seconds: float = TIME_BUDGET_SECONDS,
) -> ReconcileReport:
    now = now or timezone.now()
    stop_at = time.monotonic() + budget_seconds
    run = ReconcileRun.objects.create(started_at=now)
    report = ReconcileReport(run=run)
    findings: list[str] = []
    try:
        due = reconcile_due_sessions(now=now, limit=checkout_batch)
        for session_id in due:
            if time.monotonic() > stop_at:
                run.stopped_early = "time budget used up"
                break
            try:
                result = checkout_session_reconcile(session_id=session_id, now=now)
            except PassStopped:
                raise
            except Exception:
                # Nothing about one session may stop the others (or the subscriptions and refunds
                # after them); its claim lease makes it due again in a few minutes.
                logger.exception("session %s: reconciling failed; asking again later", session_id)
                result = CheckResult.ERROR
            if result == CheckResult.NOT_DUE:
                continue
            run.checkouts_checked += 1
            report.results[result.value] = report.results.get(result.value, 0) + 1
            if result == CheckResult.ERROR:
                run.errors += 1
            if result == CheckResult.PAID:
                run.payments_found += 1
                findings.append(f"session {session_id}: paid at Recurrente, recorded now (no webhook had)")
        if len(due) == checkout_batch or run.stopped_early:
            # What is still due (the ones looked at are no longer), counted up to a cap: reading
            # every due row of a large backlog would cost more than the figure is worth.
            # Unordered: an ordering would make PostgreSQL walk another index over the whole table.
            run.left_for_next_run = reconcile_due_queryset(now=now).order_by().values("pk")[:LEFT_COUNT_CAP].count()
        checked, changed, errors = subscriptions_reconcile(now=now, limit=SUBSCRIPTION_BATCH, stop_at=stop_at, findings=findings)
        run.subscriptions_checked, run.subscriptions_changed, run.errors = checked, changed, run.errors + errors
        polled = refunds.refunds_poll(now=now, limit=REFUND_BATCH, stop_at=stop_at)
        run.refunds_checked, run.refunds_finalized = polled.checked, len(polled.finalized)
        run.errors += polled.errors
        findings.extend(polled.finalized)
    except PassStopped as exc:
        run.stopped_early = str(exc)
        logger.error("reconcile pass stopped: %s", exc)
        from webmagic.alerts import alert_raise

        alert_raise(kind="reconcile_stopped", subject=f"Reconciliation with Recurrente stopped: {exc}",
                    body=f"The reconcile pass of {now:%Y-%m-%d %H:%M} UTC stopped: {exc}. Open payments are not being "
                         "checked with Recurrente until this is fixed.")
    finally:
        run.findings = "\n".join(findings)[:10000]
        run.finished_at = timezone.now()
        run.save()
        ReconcileRun.objects.filter(started_at__lt=now - RUN_RETENTION).delete()
    if run.checkouts_checked or run.subscriptions_checked or run.refunds_checked or run.stopped_early:
        logger.info("reconcile pass %s: %s", run.pk, "; ".join(report.lines()[:6]))
    return report
