"""Staff alerts (DESIGN §8): the rules registry, delivery, and the worker heartbeat.

A rule is a plain function `rule(*, now: datetime) -> Alert | None`, registered with
`alert_rule_register` (usable as a decorator). webmagic's own rules (emails, heartbeat) are below;
other apps register theirs from `AppConfig.ready()` (webhooks/alerts.py, checkout/alerts.py), so this
base app imports neither. `alerts_check` runs every rule: every 5 minutes from Celery
(`webmagic.tasks.check_alerts`) and from cron with `manage.py check_alerts`.

`alert_raise` is the one way an alert goes out, for rules and for event-driven alerts alike: an email
to every address in ADMINS (queued, logged and retried like all our email, or sent synchronously with
`direct=True` when the caller must not depend on the queue) and, when `ALERT_WEBHOOK_URL` is set, a
JSON POST to a chat webhook (Slack/Mattermost style). Each kind goes out at most once an hour; a
`StaffAlert` row is the claim that makes this hold when two checks run at once.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import cast

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .emails import email_alert_staff, email_deliver, email_mark_failed
from .http import thread_session
from .models import EmailLog, Heartbeat, StaffAlert

logger = logging.getLogger(__name__)

REPEAT_AFTER = timedelta(hours=1)
EMAIL_SUBJECT_PREFIX = "[WebMagic alert] "
# (connect, read) seconds: a slow chat service must not hold up healthz or the alerts task for long.
WEBHOOK_TIMEOUT = (3, 5)

# Emails a customer is waiting for: one failure is worth an alert (a broken provider key shows here
# first). The rule reads the tuple at run time.
TRANSACTIONAL_KINDS: tuple[str, ...] = (
    EmailLog.Kind.WELCOME, EmailLog.Kind.RECEIPT, EmailLog.Kind.PASSWORD_RESET, EmailLog.Kind.VERIFY_EMAIL,
    EmailLog.Kind.REFUND, EmailLog.Kind.HOSTING_ACTIVATED, EmailLog.Kind.PAYMENT_PROBLEM, EmailLog.Kind.HOSTING_SUSPENDED,
    EmailLog.Kind.EDIT_REQUEST,
)
TRANSACTIONAL_WINDOW = timedelta(hours=1)
# A queued email that has failed this many attempts is retrying after provider errors, not unlucky once.
TRANSACTIONAL_RETRYING_ATTEMPTS = 2
RECOVERY_FAILURES_ALERT_AT = 2
RECOVERY_WINDOW = timedelta(hours=24)

HEARTBEAT_WORKER = "worker"
HEARTBEAT_STALE_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    body: str


@dataclass(frozen=True)
class AlertResult:
    """What one rule did in one `alerts_check` run."""

    rule: str
    alert: Alert | None = None  # None: the rule did not fire (or raised; see `error`)
    delivered: bool = False  # claimed and delivered (after commit when run inside a transaction)
    error: str = ""  # exception class name when the rule itself failed

    @property
    def fired(self) -> bool:
        return self.alert is not None

    @property
    def suppressed(self) -> bool:
        """Fired, but the same kind already went out within the hour."""
        return self.alert is not None and not self.delivered and not self.error


AlertRule = Callable[..., Alert | None]

# name -> rule, in registration order. Public so tests can add or remove a rule with monkeypatch.
ALERT_RULES: dict[str, AlertRule] = {}


def alert_rule_register(rule: AlertRule, *, name: str | None = None) -> AlertRule:
    """Register `rule(*, now: datetime) -> Alert | None` to run in every `alerts_check`. Works as a
    decorator. Keyed by name (default: the rule's dotted path), so registering again from a
    re-run `ready()` replaces rather than duplicates."""
    ALERT_RULES[name or f"{rule.__module__}.{rule.__qualname__}"] = rule
    return rule


# --- Delivery -----------------------------------------------------------------------------------

def alert_raise(*, kind: str, subject: str, body: str, now: datetime | None = None, direct: bool = False) -> bool:
    """Alert staff unless an alert of this `kind` already went out in the last hour.

    Returns True when this call claimed the alert (it is delivered now, or when the surrounding
    transaction commits), False when it was suppressed as a repeat. Safe inside a transaction:
    the claim is part of it and delivery waits for the commit, so a rollback delivers nothing and
    frees the claim. Delivery failures are logged and recorded on the StaffAlert row, never raised.

    `direct=True` sends the email synchronously with Django's mail API instead of through the Celery
    queue (for callers that watch the queue itself: healthz, `manage.py check_alerts`). Delivery
    may take a few seconds when the chat webhook is slow; call this from tasks and commands, not
    from request paths a customer waits on.
    """
    now = now or timezone.now()
    claimed = _alert_claim(kind=kind, subject=subject, body=body, now=now, direct=direct)
    if claimed is None:
        logger.info("alert %s still firing; already delivered within the hour", kind)
        return False
    logger.warning("alert %s raised (staff alert %s): %s", kind, claimed.pk, subject)
    # robust: a failed delivery must never fail the caller's committed work (it is logged).
    transaction.on_commit(partial(alert_deliver, alert_id=claimed.pk), robust=True)
    return True


def _alert_latest(*, kind: str) -> StaffAlert | None:
    return StaffAlert.objects.filter(kind=kind).order_by("-sequence").only("sequence", "fired_at").first()


def _alert_claim(*, kind: str, subject: str, body: str, now: datetime, direct: bool) -> StaffAlert | None:
    latest = _alert_latest(kind=kind)
    if latest is not None and latest.fired_at > now - REPEAT_AFTER:
        return None
    try:
        # A savepoint, so losing the race leaves the caller's transaction usable.
        with transaction.atomic():
            return StaffAlert.objects.create(
                kind=kind, sequence=latest.sequence + 1 if latest else 1, subject=subject[:255], body=body,
                fired_at=now, direct=direct,
            )
    except IntegrityError:
        # Another run read the same latest alert and claimed the next one first: it delivers.
        return None


def alert_deliver(*, alert_id: int) -> None:
    """Email ADMINS and POST the chat webhook for a claimed alert; record what happened on it."""
    alert = StaffAlert.objects.get(pk=alert_id)
    try:
        emailed, email_note = (_email_direct if alert.direct else _email_queue)(alert=alert)
    except Exception as exc:  # the webhook must still be tried when email is what is broken
        logger.exception("staff alert %s: email could not be sent or queued", alert.pk)
        emailed, email_note = False, f"email: {type(exc).__name__}"
    posted, webhook_note = alert_webhook_post(alert=alert)
    StaffAlert.objects.filter(pk=alert.pk).update(
        delivered_at=timezone.now(), emailed=emailed, webhook_posted=posted, delivery_notes=f"{email_note}\n{webhook_note}",
    )
    logger.info("staff alert %s (%s) delivered: %s; %s", alert.pk, alert.kind, email_note, webhook_note)


def _email_queue(*, alert: StaffAlert) -> tuple[bool, str]:
    logs = email_alert_staff(subject=EMAIL_SUBJECT_PREFIX + alert.subject, body=alert.body, dedupe_key=f"alert:{alert.kind}:{alert.pk}")
    if not logs:
        return False, "email: no ADMINS configured"
    return True, f"email: queued to {len(logs)} admin(s) (email log {', '.join(str(log.pk) for log in logs)})"


def _email_direct(*, alert: StaffAlert) -> tuple[bool, str]:
    """Send now, bypassing Celery, but logged like every email (status sent or failed)."""
    if not settings.ADMINS:
        logger.error("staff alert %s with no ADMINS configured", alert.pk)
        return False, "email: no ADMINS configured"
    sent, failed = [], []
    for _name, address in settings.ADMINS:
        # Claimed (`sending`) from the start, so no queued task picks it up; the one send path
        # (email_deliver) renders, sends and records the provider's id. If this process dies
        # mid-send, the sweep takes the row over like any other interrupted send.
        log = EmailLog.objects.create(
            kind=EmailLog.Kind.STAFF_ALERT, to_email=address, subject=(EMAIL_SUBJECT_PREFIX + alert.subject)[:255],
            context={"body": alert.body}, status=EmailLog.Status.SENDING, attempts=1, dedupe_key=f"alert:{alert.kind}:{alert.pk}:{address}",
        )
        try:
            email_deliver(log)
        except Exception as exc:
            email_mark_failed(log.pk, f"{type(exc).__name__}: {exc}")
            logger.error("staff alert %s: direct email %s failed (%s)", alert.pk, log.pk, type(exc).__name__)
            failed.append(log.pk)
            continue
        sent.append(log.pk)
    note = f"email: sent directly to {len(sent)} admin(s)"
    if failed:
        note += f", failed for {len(failed)} (email log {', '.join(map(str, failed))})"
    return bool(sent), note


def alert_webhook_post(*, alert: StaffAlert) -> tuple[bool, str]:
    """POST the alert as JSON to ALERT_WEBHOOK_URL, if set. Returns (posted, note); never raises.

    The URL is a capability (anyone holding it can post to staff's channel): it is never logged,
    and neither are request exceptions' messages, which contain it."""
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return False, "webhook: not configured"
    payload = {
        "text": f"{alert.subject}\n{alert.body}",
        "kind": alert.kind,
        "subject": alert.subject,
        "body": alert.body,
        "fired_at": alert.fired_at.isoformat(),
    }
    try:
        # No redirects: a redirect could send the alert somewhere staff never configured.
        response = thread_session().post(url, json=payload, timeout=WEBHOOK_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        logger.warning("staff alert %s: webhook POST failed (%s)", alert.pk, type(exc).__name__)
        return False, f"webhook: {type(exc).__name__}"
    if not 200 <= response.status_code < 300:
        logger.warning("staff alert %s: webhook answered HTTP %s", alert.pk, response.status_code)
        return False, f"webhook: HTTP {response.status_code}"
    return True, f"webhook: HTTP {response.status_code}"


# --- Checking -----------------------------------------------------------------------------------

def alerts_check(*, now: datetime | None = None, direct: bool = False) -> list[AlertResult]:
    """Run every registered rule and raise the alerts that fire; one result per rule."""
    now = now or timezone.now()
    results = []
    for name, rule in list(ALERT_RULES.items()):
        try:
            # A savepoint, so a rule whose query fails cannot break the others' when run in a transaction.
            with transaction.atomic():
                alert = rule(now=now)
        except Exception as exc:
            # One broken rule must not silence the others.
            logger.exception("alert rule %s failed", name)
            results.append(AlertResult(rule=name, error=type(exc).__name__))
            continue
        if alert is None:
            results.append(AlertResult(rule=name))
            continue
        try:
            delivered = alert_raise(kind=alert.kind, subject=alert.subject, body=alert.body, now=now, direct=direct)
        except Exception as exc:
            logger.exception("alert %s (rule %s) could not be raised", alert.kind, name)
            results.append(AlertResult(rule=name, alert=alert, error=type(exc).__name__))
            continue
        results.append(AlertResult(rule=name, alert=alert, delivered=delivered))
    return results


# --- Heartbeat ----------------------------------------------------------------------------------

def heartbeat_stamp(*, name: str = HEARTBEAT_WORKER, now: datetime | None = None) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": now or timezone.now()})


def heartbeat_status(*, name: str = HEARTBEAT_WORKER, now: datetime | None = None) -> str:
    """"ok", "stale" (last beat over 10 minutes ago) or "never"."""
    beat_at = Heartbeat.objects.filter(name=name).values_list("beat_at", flat=True).first()
    return _heartbeat_state(beat_at=beat_at, now=now or timezone.now())


def _heartbeat_state(*, beat_at: datetime | None, now: datetime) -> str:
    if beat_at is None:
        return "never"
    return "stale" if beat_at < now - HEARTBEAT_STALE_AFTER else "ok"


@alert_rule_register
def alert_worker_heartbeat(*, now: datetime) -> Alert | None:
    """The worker has not stamped its heartbeat for 10 minutes (or ever): nothing in the queue runs."""
    beat_at = Heartbeat.objects.filter(name=HEARTBEAT_WORKER).values_list("beat_at", flat=True).first()
    state = _heartbeat_state(beat_at=beat_at, now=now)
    if state == "ok":
        return None
    if state == "never":
        subject = "No worker heartbeat has ever been recorded"
        seen = "No worker has ever run the heartbeat task. On a brand-new deployment this clears a minute after " \
               "the worker and beat start."
    else:
        # cast: the state is "stale" here, so a heartbeat was recorded.
        minutes = int((now - cast(datetime, beat_at)).total_seconds() // 60)
        subject = f"Worker heartbeat is {minutes} minutes old"
        seen = f"The last worker heartbeat was at {beat_at:%Y-%m-%d %H:%M} UTC ({minutes} minutes ago; alert over " \
               f"{int(HEARTBEAT_STALE_AFTER.total_seconds() // 60)})."
    return Alert(
        kind="worker_heartbeat",
        subject=subject,
        body=(
            f"{seen}\nWhile it is stale, webhooks are stored but not processed, emails wait and recovery reminders "
            "do not go out. Check that the Celery worker and beat processes are running and that the broker "
            "answers (/healthz/); a long backlog also lets the heartbeat go stale (its tasks expire after a "
            "minute in the queue)."
        ),
    )


def alert_heartbeat_raise(*, now: datetime | None = None) -> bool:
    """Check the heartbeat and, when stale, alert synchronously (from outside the queue it watches).
    For healthz; True if an alert was delivered now."""
    now = now or timezone.now()
    alert = alert_worker_heartbeat(now=now)
    if alert is None:
        return False
    return alert_raise(kind=alert.kind, subject=alert.subject, body=alert.body, now=now, direct=True)


# --- Email rules --------------------------------------------------------------------------------

@alert_rule_register
def alert_transactional_emails_failing(*, now: datetime) -> Alert | None:
    """Any customer email (welcome, receipt, password reset, verification, …) that failed or keeps
    failing in the last hour: at a few sales a day, one is already a customer left waiting."""
    failing = EmailLog.objects.filter(kind__in=TRANSACTIONAL_KINDS, updated_at__gte=now - TRANSACTIONAL_WINDOW).filter(
        Q(status=EmailLog.Status.FAILED)
        | (Q(status=EmailLog.Status.QUEUED, attempts__gte=TRANSACTIONAL_RETRYING_ATTEMPTS) & ~Q(error=""))
    )
    rows = list(failing.order_by("-updated_at").values_list("pk", "kind", "status", "attempts", "error")[:11])
    if not rows:
        return None
    count = len(rows) if len(rows) <= 10 else failing.count()
    # Ids, kinds and the provider's error only: the body also goes to a third-party chat webhook.
    listing = "\n".join(
        f"- email {pk} ({kind}, {'failed' if status == EmailLog.Status.FAILED else 'retrying'} after {attempts} "
        f"attempt(s)): {error[:160]}"
        for pk, kind, status, attempts, error in rows[:10]
    )
    return Alert(
        kind="transactional_emails_failing",
        subject=f"{count} customer email(s) failed or are failing to send",
        body=(
            f"{count} customer email(s) ({', '.join(sorted({row[1] for row in rows}))}) failed or are retrying after "
            f"provider errors in the last hour.\n{listing}\n\nCheck the Brevo key and sending domain, then the Email "
            "log in admin (status failed or queued). Customers may be waiting for a receipt or a password link."
        ),
    )


@alert_rule_register
def alert_recovery_emails_failing(*, now: datetime) -> Alert | None:
    """2 recovery reminders failed or bounced in the last 24 hours."""
    failing = EmailLog.objects.filter(
        kind=EmailLog.Kind.RECOVERY_REMINDER, status__in=[EmailLog.Status.FAILED, EmailLog.Status.BOUNCED],
        updated_at__gte=now - RECOVERY_WINDOW,
    )
    count = failing.count()
    if count < RECOVERY_FAILURES_ALERT_AT:
        return None
    ids = ", ".join(str(pk) for pk in failing.order_by("-updated_at").values_list("pk", flat=True)[:10])
    return Alert(
        kind="recovery_emails_failing",
        subject=f"{count} recovery emails failed or bounced in the last 24 hours",
        body=(
            f"{count} recovery reminders failed or bounced in the last 24 hours (alert at {RECOVERY_FAILURES_ALERT_AT}); "
            f"most recent email log ids: {ids}.\nSee the Email log in admin (kind: recovery reminder, status: failed or "
            "bounced) for the provider's errors; check the Brevo key and sending domain."
        ),
    )
