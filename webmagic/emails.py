"""The one way the app sends email: queue a logged message, send it from Celery after commit.

`email_queue()` renders the subject, writes an EmailLog row (optionally unique on a dedupe key, so
"send once" is a database fact) and enqueues `webmagic.tasks.send_email` when the surrounding
transaction commits. Every word an email says is in its templates, `templates/emails/<kind>`:
`.subject.txt` (rendered when it is queued and stored on the log), `.txt` and `.html` (rendered
when it is sent, both extending one base layout). What an email says is each app's business
(customers/emails.py, checkout/emails.py, sites/emails.py): this base app imports none of them.
Kinds whose links carry tokens have a context builder, registered by their app from
`AppConfig.ready()` (`context_builder_register`): the token is made at send time and never stored.
"""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.template import Context
from django.template.loader import get_template, render_to_string
from django.utils import timezone

from .http import request_never_sent
from .models import EmailLog

if TYPE_CHECKING:
    from django.template.backends.django import Template as DjangoTemplate

logger = logging.getLogger(__name__)

# fn(log) -> dict of context made when the email is sent; may include "headers" for the message.
ContextBuilder = Callable[[EmailLog], dict]

# Kinds that cannot be rendered without their builder: their links carry tokens made at send time.
KINDS_NEEDING_CONTEXT_BUILDER = frozenset({
    EmailLog.Kind.WELCOME, EmailLog.Kind.PASSWORD_RESET, EmailLog.Kind.VERIFY_EMAIL, EmailLog.Kind.RECOVERY_REMINDER,
})

# kind -> its builder, filled by each app's AppConfig.ready() (the app that knows how to make its links).
CONTEXT_BUILDERS: dict[str, ContextBuilder] = {}


def context_builder_register(kind: str, builder: ContextBuilder) -> ContextBuilder:
    """Register the send-time context builder of one email kind. Registering again (a re-run
    `ready()`) replaces it."""
    if kind not in EmailLog.Kind.values:
        raise ValueError(f"cannot register a context builder for '{kind}': it is not an EmailLog kind")
    CONTEXT_BUILDERS[kind] = builder
    return builder


def context_builder_for(kind: str) -> ContextBuilder | None:
    builder = CONTEXT_BUILDERS.get(kind)
    if builder is None and kind in KINDS_NEEDING_CONTEXT_BUILDER:
        raise ImproperlyConfigured(
            f"Email kind '{kind}' needs a context builder (its links are made when it is sent) and none is "
            "registered: its app must call webmagic.emails.context_builder_register() from AppConfig.ready()."
        )
    return builder


class EmailNoLongerWanted(Exception):
    """Raised by a context builder when, at send time, the email should not go after all (the
    reason is recorded on the log)."""


def absolute_url(path: str) -> str:
    return settings.SITE_URL + path


def header_flat(value) -> str:
    """One line, whatever went in: a newline in a business name must not make an email header
    invalid (Django refuses to send it with BadHeaderError)."""
    return " ".join(str(value).split())


def email_subject_render(*, kind: str, context: dict) -> str:
    """The subject, from `emails/<kind>.subject.txt`: plain text, not HTML (a business called
    "Tom & Jerry's" keeps its "&"), on one line, cut to fit EmailLog.subject."""
    # cast: our templates are the Django engine's, whose wrapper holds the engine's own Template.
    template = cast("DjangoTemplate", get_template(f"emails/{kind}.subject.txt")).template
    subject = header_flat(template.render(Context(context, autoescape=False)))[:255]
    if not subject:
        raise ValueError(f"emails/{kind}.subject.txt rendered an empty subject")
    return subject


def email_queue(
    *, kind: str, to_email: str, context: dict | None = None, dedupe_key: str | None = None,
    user=None, checkout_session=None,
) -> EmailLog | None:
    """Record an email and send it after commit. Returns None if `dedupe_key` was already used.
    The subject is rendered now, from `context`, and stored with it."""
    context = context or {}
    subject = email_subject_render(kind=kind, context=context)
    try:
        with transaction.atomic():
            log = EmailLog.objects.create(
                kind=kind, to_email=to_email, subject=subject, context=context,
                dedupe_key=dedupe_key, user=user, checkout_session=checkout_session,
            )
    except IntegrityError:
        if dedupe_key and EmailLog.objects.filter(dedupe_key=dedupe_key).exists():
            logger.info("email of kind %s already queued once (its dedupe key is taken); not sending again", kind)
            return None
        raise
    from .tasks import send_email

    # robust: a broker that is down must not fail the caller's already-committed work; the
    # periodic `resend_stuck_emails` task picks the email up later.
    transaction.on_commit(lambda: send_email.delay(log.pk), robust=True)
    logger.info("email %s queued: kind=%s", log.pk, kind)
    return log


def email_alert_staff(*, subject: str, body: str, dedupe_key: str | None = None) -> list[EmailLog]:
    """Mail every address in ADMINS through the same logged, retried path. Staff alerts say what
    their caller says: `emails/staff_alert.subject.txt` is the `subject` given here."""
    logs = []
    for _name, address in settings.ADMINS:
        key = f"{dedupe_key}:{address}" if dedupe_key else None
        log = email_queue(
            kind=EmailLog.Kind.STAFF_ALERT, to_email=address, context={"subject": subject, "body": body}, dedupe_key=key,
        )
        if log:
            logs.append(log)
    if not settings.ADMINS:
        logger.error("staff alert with no ADMINS configured: %s", subject)
    return logs


def customer_greeting(name: str) -> str:
    """The one greeting of every customer email: "Hi María," from the first word of the name
    they gave ("María José Pérez" too), or "Hi," when we have none."""
    words = str(name).split()
    return f"Hi {words[0]}," if words else "Hi,"


def email_render(log: EmailLog) -> EmailMultiAlternatives:
    context = {
        "SITE_URL": settings.SITE_URL,
        "COMPANY_POSTAL_ADDRESS": settings.COMPANY_POSTAL_ADDRESS,
        **log.context,
        # The subject as sent (one line, cut to fit), whatever the context it was rendered from held.
        "subject": log.subject,
    }
    builder = context_builder_for(log.kind)
    if builder:
        context.update(builder(log))
    # Made here, at send time, so rows queued before this rule greet the same way.
    context["greeting"] = customer_greeting(context.get("customer_name") or "")
    headers = {name: header_flat(value) for name, value in context.pop("headers", {}).items()}
    headers[IDEMPOTENCY_HEADER] = email_idempotency_key(log)
    text = render_to_string(f"emails/{log.kind}.txt", context)
    html = render_to_string(f"emails/{log.kind}.html", context)
    message = EmailMultiAlternatives(
        subject=header_flat(log.subject), body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[log.to_email],
        headers=headers,
    )
    message.attach_alternative(html, "text/html")
    return message


# Brevo reads it from the message's headers (anymail passes extra headers through as they are).
IDEMPOTENCY_HEADER = "idempotencyKey"
# Every attempt counts, including one whose worker died; the task's retries stop at the same number.
MAX_ATTEMPTS = 7
# A send whose worker died may be retried with the same provider idempotency key only while the
# provider still remembers that key (Brevo: 15 minutes). Past this age its outcome stays unknown:
# staff decide (failed, alerted), since sending twice is worse than asking.
RESEND_WINDOW = timedelta(minutes=10)
# Without row locks (SQLite, laptop mode) a live send cannot be told from a dead one: a claim is
# only taken over once it is older than any send can take (the provider timeout is 30 s).
UNLOCKED_TAKEOVER_AFTER = timedelta(minutes=2)


def email_idempotency_key(log: EmailLog) -> str:
    """The same UUID on every attempt at one email, so a provider that received an attempt whose
    answer we lost does not deliver the retry (Brevo's `idempotencyKey` must be a UUID). Derived
    from the row unless staff sent it again (a new send, a new key)."""
    if log.idempotency_key:
        return str(log.idempotency_key)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{settings.SITE_URL}/emails/{log.pk}/{log.created_at.isoformat()}"))


def email_claim_for_sending(log_id: int, *, now: datetime | None = None) -> EmailLog | None:
    """Claim an email for one sending attempt, or None if it is done or a live worker has it.

    The claim is a committed write (status `sending`, one more attempt) so an attempt counts even
    if the worker dies during it. The sender then holds the row locked while it sends
    (`email_deliver`), so a `sending` row that is *not* locked was left by a dead worker: it is
    taken over at once and sent again under the same idempotency key."""
    now = now or timezone.now()
    with transaction.atomic():
        log = _lockable(EmailLog.objects.filter(pk=log_id, status__in=[EmailLog.Status.QUEUED, EmailLog.Status.SENDING])).first()
        if log is None:
            return None
        died = log.status == EmailLog.Status.SENDING
        if died and not _takeover_allowed(log, now=now):
            return None
        # A dead attempt's outcome is unknown from its claim on, like one whose answer was lost.
        unknown_since = log.outcome_unknown_since or (log.updated_at if died else None)
        if unknown_since and unknown_since < now - RESEND_WINDOW:
            _outcome_unknown_record(log, since=unknown_since)
            return None
        if log.attempts >= MAX_ATTEMPTS:
            # Attempts are counted at the claim, so an email that kills its worker every time ends here.
            email_mark_failed(log.pk, f"Gave up after {log.attempts} attempts. Last error: {log.error or 'none recorded'}")
            return None
        if died:
            logger.warning("email %s: its previous sending attempt died with the outcome unknown; sending again", log.pk)
        EmailLog.objects.filter(pk=log.pk).update(
            status=EmailLog.Status.SENDING, attempts=F("attempts") + 1, outcome_unknown_since=unknown_since, updated_at=now,
        )
    log.status, log.attempts, log.outcome_unknown_since, log.updated_at = EmailLog.Status.SENDING, log.attempts + 1, unknown_since, now
    return log


def _lockable(queryset):
    # skip_locked: a row a live sender holds is not ours to look at. SQLite has no row locks.
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True)
    return queryset


def _takeover_allowed(log: EmailLog, *, now: datetime) -> bool:
    if connection.features.has_select_for_update_skip_locked:
        return True  # we got the row, so no live sender holds it
    return log.updated_at < now - UNLOCKED_TAKEOVER_AFTER


def _outcome_unknown_record(log: EmailLog, *, since: datetime) -> None:
    error = (
        f"Outcome unknown: a sending attempt at {since:%Y-%m-%d %H:%M} UTC may have reached the provider (its answer "
        "was lost) and is too old to retry safely. Check the provider's log for this recipient; use \"Send again\" "
        f"if it did not go. Last error: {log.error or 'none recorded'}"
    )
    email_mark_failed(log.pk, error)


def email_deliver(log: EmailLog) -> None:
    """Send a claimed email, holding its row locked for the whole attempt (the proof, to other
    workers, that this attempt is alive). On failure it goes back to `queued` with the error so
    the task can retry it; the caller decides when to give up (`email_mark_failed`)."""
    mine = Q(pk=log.pk, status=EmailLog.Status.SENDING, updated_at=log.updated_at)
    sending = False
    try:
        with transaction.atomic():
            if not list(EmailLog.objects.select_for_update().filter(mine).values_list("pk", flat=True)):
                logger.warning("email %s: claim taken over by another worker; not sending", log.pk)
                return
            message = email_render(log)
            sending = True
            message.send()
            status = getattr(message, "anymail_status", None)
            EmailLog.objects.filter(mine).update(
                status=EmailLog.Status.SENT, sent_at=timezone.now(), error="", outcome_unknown_since=None,
                provider_message_id=(getattr(status, "message_id", None) or "")[:255], updated_at=timezone.now(),
            )
    except EmailNoLongerWanted as exc:
        EmailLog.objects.filter(mine).update(status=EmailLog.Status.CANCELLED, error=str(exc)[:2000], updated_at=timezone.now())
        logger.info("email %s cancelled before sending: %s", log.pk, exc)
        return
    except Exception as exc:
        # Rendering errors land here too: the email is retried and, if it keeps failing, marked
        # failed (and alerted), never left `sending`. An attempt the provider may have taken is
        # remembered, so it is only retried while the provider still knows its idempotency key.
        unknown_since = log.outcome_unknown_since or (log.updated_at if sending and _may_have_reached_provider(exc) else None)
        EmailLog.objects.filter(mine).update(
            status=EmailLog.Status.QUEUED, error=f"{type(exc).__name__}: {exc}"[:2000], outcome_unknown_since=unknown_since,
            updated_at=timezone.now(),
        )
        raise
    logger.info("email %s sent: kind=%s", log.pk, log.kind)


def email_outcome_unknown(log_id: int) -> bool:
    return EmailLog.objects.filter(pk=log_id, outcome_unknown_since__isnull=False).exists()


def _may_have_reached_provider(exc: Exception) -> bool:
    """Whether a failed send may still have been delivered: a provider 5xx, a read timeout, a
    connection dropped after sending, or anything we cannot tell. Not: a 4xx refusal, or a
    connection that was never made."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        return status >= 500
    cause = exc.__cause__ if isinstance(exc.__cause__, requests.RequestException) else exc
    if isinstance(cause, requests.RequestException):
        return not request_never_sent(cause)
    return True


def emails_stuck_redrive(*, older_than, interrupted_before, limit: int = 500) -> list[int]:
    """Emails nobody is sending are enqueued again: `queued` ones a lost broker message or a
    broker down at commit left behind, and `sending` ones whose worker died mid-attempt (the
    task's claim tells a dead attempt from a live one, and either resends under the same
    idempotency key or, past RESEND_WINDOW, marks it failed for staff). One that used all its
    attempts is marked failed by the claim, so nothing stays queued or sending for ever."""
    from .tasks import send_email

    stuck = Q(status=EmailLog.Status.QUEUED, updated_at__lt=older_than) | Q(
        status=EmailLog.Status.SENDING, updated_at__lt=interrupted_before
    )
    ids = list(EmailLog.objects.filter(stuck).order_by("updated_at").values_list("pk", flat=True)[:limit])
    for log_id in ids:
        send_email.delay(log_id)
    if ids:
        logger.warning("re-driving %s stuck emails (first id %s)", len(ids), ids[0])
    return ids


def emails_send_again(*, log_ids) -> list[int]:
    """Staff decided these failed emails should go (admin action "Send again", after checking the
    provider's log when the outcome was unknown): queued afresh with a full set of attempts and a
    new idempotency key, since it is a new send (the provider must not drop it as a duplicate of
    the attempt that did not arrive). The old provider message id is dropped, so late tracking
    events for it change nothing."""
    from .tasks import send_email

    with transaction.atomic():
        ids = list(
            EmailLog.objects.select_for_update().filter(pk__in=list(log_ids), status=EmailLog.Status.FAILED)
            .values_list("pk", flat=True)
        )
        for log_id in ids:
            EmailLog.objects.filter(pk=log_id).update(
                status=EmailLog.Status.QUEUED, attempts=0, outcome_unknown_since=None, provider_message_id="",
                idempotency_key=uuid.uuid4(), updated_at=timezone.now(),
            )
        for log_id in ids:
            # mypy cannot infer a lambda whose default binds the loop variable (the default is the point).
            transaction.on_commit(lambda log_id=log_id: send_email.delay(log_id), robust=True)  # type: ignore[misc]
    logger.info("staff re-queued %s failed email(s): %s", len(ids), ids[:20])
    return ids


def email_mark_failed(log_id: int, error: str) -> None:
    EmailLog.objects.filter(pk=log_id).update(status=EmailLog.Status.FAILED, error=error[:2000], updated_at=timezone.now())
    logger.error("email %s failed for good", log_id)
