"""The one way the app sends email: queue a logged message, send it from Celery after commit.

`email_queue()` writes an EmailLog row (optionally unique on a dedupe key, so "send once" is a
database fact) and enqueues `webmagic.tasks.send_email` when the surrounding transaction commits.
Templates are `templates/emails/<kind>.html` and `.txt`, both extending one base layout. Kinds
whose links carry tokens name a context builder below: the token is made at send time and never
stored.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import EmailLog

logger = logging.getLogger(__name__)

# kind -> dotted path of fn(log) -> dict of extra context; may include "headers" for the message.
CONTEXT_BUILDERS: dict[str, str] = {
    EmailLog.Kind.WELCOME: "customers.emails.welcome_context",
    EmailLog.Kind.PASSWORD_RESET: "customers.emails.password_reset_context",
    EmailLog.Kind.VERIFY_EMAIL: "customers.emails.verify_email_context",
    EmailLog.Kind.RECOVERY_REMINDER: "checkout.emails.recovery_reminder_context",
}


class EmailNoLongerWanted(Exception):
    """Raised by a context builder when, at send time, the email should not go after all (the
    reason is recorded on the log)."""


def absolute_url(path: str) -> str:
    return settings.SITE_URL + path


def email_queue(
    *, kind: str, to_email: str, subject: str, context: dict | None = None, dedupe_key: str | None = None,
    user=None, checkout_session=None,
) -> EmailLog | None:
    """Record an email and send it after commit. Returns None if `dedupe_key` was already used."""
    try:
        with transaction.atomic():
            log = EmailLog.objects.create(
                kind=kind, to_email=to_email, subject=subject[:255], context=context or {},
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
    """Mail every address in ADMINS through the same logged, retried path."""
    logs = []
    for _name, address in settings.ADMINS:
        key = f"{dedupe_key}:{address}" if dedupe_key else None
        log = email_queue(kind=EmailLog.Kind.STAFF_ALERT, to_email=address, subject=subject, context={"body": body}, dedupe_key=key)
        if log:
            logs.append(log)
    if not settings.ADMINS:
        logger.error("staff alert with no ADMINS configured: %s", subject)
    return logs


def email_render(log: EmailLog) -> EmailMultiAlternatives:
    context = {
        "SITE_URL": settings.SITE_URL,
        "COMPANY_POSTAL_ADDRESS": settings.COMPANY_POSTAL_ADDRESS,
        "subject": log.subject,
        **log.context,
    }
    builder = CONTEXT_BUILDERS.get(log.kind)
    if builder:
        context.update(import_string(builder)(log))
    headers = context.pop("headers", {})
    text = render_to_string(f"emails/{log.kind}.txt", context)
    html = render_to_string(f"emails/{log.kind}.html", context)
    message = EmailMultiAlternatives(
        subject=log.subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[log.to_email], headers=headers
    )
    message.attach_alternative(html, "text/html")
    return message


def email_claim_for_sending(log_id: int) -> EmailLog | None:
    """Move a queued email to `sending` exactly once. A worker that dies mid-send leaves it in
    `sending`, so a redelivered task will not send it twice (staff see it in admin)."""
    with transaction.atomic():
        claimed = EmailLog.objects.filter(pk=log_id, status=EmailLog.Status.QUEUED).update(
            status=EmailLog.Status.SENDING, updated_at=timezone.now()
        )
    if not claimed:
        return None
    return EmailLog.objects.get(pk=log_id)


def email_deliver(log: EmailLog) -> None:
    """Send a claimed email. On failure it goes back to `queued` so the task can retry it."""
    try:
        message = email_render(log)
    except EmailNoLongerWanted as exc:
        EmailLog.objects.filter(pk=log.pk).update(
            status=EmailLog.Status.CANCELLED, error=str(exc)[:2000], updated_at=timezone.now()
        )
        logger.info("email %s cancelled before sending: %s", log.pk, exc)
        return
    try:
        message.send()
    except Exception as exc:
        EmailLog.objects.filter(pk=log.pk).update(
            status=EmailLog.Status.QUEUED, attempts=log.attempts + 1, error=f"{type(exc).__name__}: {exc}"[:2000],
            updated_at=timezone.now(),
        )
        raise
    status = getattr(message, "anymail_status", None)
    EmailLog.objects.filter(pk=log.pk).update(
        status=EmailLog.Status.SENT, attempts=log.attempts + 1, sent_at=timezone.now(), error="",
        provider_message_id=(getattr(status, "message_id", None) or "")[:255], updated_at=timezone.now(),
    )
    logger.info("email %s sent: kind=%s", log.pk, log.kind)


def emails_stuck_redrive(*, older_than, max_attempts: int, limit: int = 500) -> list[int]:
    """Queued emails nobody is sending (a lost broker message, a broker that was down at commit)
    are enqueued again. `sending` ones are left alone: their outcome is unknown and sending twice
    is worse than staff looking at one in admin."""
    from .tasks import send_email

    ids = list(
        EmailLog.objects.filter(status=EmailLog.Status.QUEUED, updated_at__lt=older_than, attempts__lt=max_attempts)
        .order_by("updated_at").values_list("pk", flat=True)[:limit]
    )
    for log_id in ids:
        send_email.delay(log_id)
    if ids:
        logger.warning("re-driving %s stuck queued emails (first id %s)", len(ids), ids[0])
    return ids


def email_mark_failed(log_id: int, error: str) -> None:
    EmailLog.objects.filter(pk=log_id).update(status=EmailLog.Status.FAILED, error=error[:2000], updated_at=timezone.now())
    logger.error("email %s failed for good", log_id)
