"""Recurrente webhook intake and processing (DESIGN §3).

Intake is small and fast: verify the Svix signature on the raw body, parse, store the delivery
once (unique on its svix-id), enqueue processing after commit, answer. Processing claims the
event row so that two workers never run it at once, dispatches through `handlers.handler_for` (one table) in
one transaction with the status change, and records failures for retries with backoff. A
periodic sweep re-drives anything a lost broker message or a dead worker left behind.
"""

import json
import logging
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, cast

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from checkout.recurrente import JsonObject
from webmagic.emails import email_alert_staff
from webmagic.webhook_signing import HEADER_PREFIXES, SignatureError, verify

from . import handlers
from .models import WebhookEvent, WebhookRejection

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8  # automatic tries per event; staff can always reprocess by hand after that
RETRY_BASE_SECONDS = 60  # 1, 2, 4, … 64 minutes between automatic tries
RETRY_MAX_SECONDS = 2 * 60 * 60
# A live processing attempt holds its event row locked (PostgreSQL), so an unlocked `processing`
# row lost its worker and is taken over at once; the sweep gives the claim this moment to take
# its lock. Without row locks (SQLite, laptop mode) only age tells: longer than the Celery hard
# time limit.
INTERRUPTED_PROCESSING = timedelta(minutes=1)
STALE_PROCESSING = timedelta(minutes=10)
# A `received` event normally starts within a second; older ones lost their broker message.
RECEIVED_GRACE = timedelta(minutes=2)
# Celery's own countdown normally re-runs a failed event; the sweep only catches lost retries.
RETRY_GRACE = timedelta(minutes=2)
SWEEP_BATCH = 500
# Rejection counts are for alerts and the health page, not history: a month is plenty.
REJECTION_RETENTION = timedelta(days=30)


# --- Intake --------------------------------------------------------------------------------------

Reason = WebhookRejection.Reason


class IntakeRejected(Exception):
    """The delivery is refused with a 4xx; nothing was stored. `message` is safe to log and to
    answer with; `reason` is the WebhookRejection.Reason it is counted under."""

    def __init__(self, message: str, *, reason: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status


class IntakeUnavailable(Exception):
    """We could not store a valid delivery (database trouble): answer 5xx so Svix retries."""


@dataclass(frozen=True)
class IntakeResult:
    event_id: int
    created: bool


def webhook_signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The svix-*/webhook-* headers, lower-cased, from any case-insensitive header mapping."""
    return {name.lower(): value for name, value in headers.items() if name.lower().startswith(HEADER_PREFIXES)}


def webhook_delivery_accept(*, headers: Mapping[str, str], body: bytes) -> IntakeResult:
    """Verify, parse and store one delivery. Raises IntakeRejected (already counted in
    WebhookRejection) or IntakeUnavailable."""
    try:
        delivery_id, payload, text = _delivery_verify(headers=headers, body=body)
    except IntakeRejected as exc:
        webhook_rejection_record(reason=exc.reason)
        raise

    event_type = payload["event_type"]
    object_id = payload["id"] if isinstance(payload.get("id"), str) else ""
    live_mode = _live_mode(payload)
    try:
        event_id, created = _event_store_once(
            delivery_id=delivery_id, event_type=event_type[:100], object_id=object_id[:100],
            live_mode=live_mode, text=text, payload=payload,
        )
        if created:
            _enqueue_after_commit(event_id)
    except DatabaseError as exc:
        logger.exception("webhook %s (%s) could not be stored", delivery_id, event_type[:100])
        raise IntakeUnavailable("database unavailable") from exc
    if created:
        logger.info("webhook %s stored as event %s: %s %s", delivery_id, event_id, event_type[:100], object_id[:100])
    else:
        logger.info("webhook %s is a duplicate of event %s; acknowledged", delivery_id, event_id)
    if created and live_mode is not None and live_mode != settings.RECURRENTE_LIVE_MODE:
        # Kept and acknowledged (staff can reprocess it once the configuration is fixed), but for
        # this deployment it is as good as refused: count it so a wrong RECURRENTE_LIVE_MODE shows.
        # Only when created: Svix retries keep the svix-id, and one delivery is one rejection.
        logger.warning(
            "webhook %s (event %s) has live_mode=%s but RECURRENTE_LIVE_MODE=%s; it will be ignored",
            delivery_id, event_id, live_mode, settings.RECURRENTE_LIVE_MODE,
        )
        webhook_rejection_record(reason=Reason.OTHER_MODE)
    return IntakeResult(event_id=event_id, created=created)


def _delivery_verify(*, headers: Mapping[str, str], body: bytes) -> tuple[str, JsonObject, str]:
    if len(body) > settings.WEBHOOK_MAX_BODY_BYTES:
        raise IntakeRejected("body too large", reason=Reason.OVERSIZED_BODY, status=413)
    try:
        delivery_id = verify(
            headers=headers, body=body, secrets=settings.RECURRENTE_WEBHOOK_SECRETS,
            tolerance=settings.WEBHOOK_TOLERANCE_SECONDS,
        )
    except SignatureError as exc:
        raise IntakeRejected(f"signature: {exc}", reason=exc.reason, status=exc.status) from exc
    payload, text = _payload_parse(body)
    return delivery_id, payload, text


def webhook_rejection_record(*, reason: str, now: datetime | None = None) -> bool:
    """Count one refused delivery in its minute bucket. Never raises: the count is for alerts, and
    a database failure here must not turn the 4xx answer into a 500 (Svix would then retry a
    delivery that can never succeed). Returns whether the count was written."""
    try:
        _rejection_upsert(reason=reason, now=now or timezone.now())
    except Exception:
        # Broader than DatabaseError on purpose (a dropped connection raises InterfaceError): a
        # counter must never change the answer. logger.exception keeps the failure visible.
        logger.exception("could not count a rejected webhook delivery (%s)", reason)
        return False
    return True


def _rejection_upsert(*, reason: str, now: datetime) -> None:
    """One INSERT … ON CONFLICT DO UPDATE (PostgreSQL and SQLite alike): concurrent rejections in
    the same minute each add one, with no read-modify-write race and no lost update."""
    table = connection.ops.quote_name(WebhookRejection._meta.db_table)
    count, last = connection.ops.quote_name("count"), connection.ops.quote_name("last_rejected_at")
    bucket = now.astimezone(UTC).replace(second=0, microsecond=0)
    # atomic(): inside an outer transaction a failure rolls back to a savepoint instead of
    # breaking the caller's transaction; in autocommit it is the statement's own transaction.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (bucket, reason, {count}, {last}) VALUES (%s, %s, 1, %s)"  # noqa: S608
            f" ON CONFLICT (bucket, reason) DO UPDATE SET {count} = {table}.{count} + 1,"
            f" {last} = CASE WHEN EXCLUDED.{last} > {table}.{last} THEN EXCLUDED.{last} ELSE {table}.{last} END",
            [connection.ops.adapt_datetimefield_value(bucket), reason, connection.ops.adapt_datetimefield_value(now)],
        )


def webhook_rejections_prune(*, older_than: datetime) -> int:
    """Delete rejection buckets that started before `older_than`; returns how many rows went."""
    deleted, _ = WebhookRejection.objects.filter(bucket__lt=older_than).delete()
    if deleted:
        logger.info("pruned %s webhook rejection bucket(s) older than %s", deleted, older_than.isoformat())
    return deleted


def _event_store_once(
    *, delivery_id: str, event_type: str, object_id: str, live_mode: bool | None, text: str, payload: JsonObject,
) -> tuple[int, bool]:
    """Store a delivery unless its svix-id is already stored: one INSERT … ON CONFLICT DO NOTHING
    RETURNING id, committed on its own (the hot path of intake: one round trip instead of a
    transaction, a savepoint, a SELECT and an INSERT). A concurrent duplicate waits on the unique
    index, inserts nothing, and reads the winner's id."""
    table = connection.ops.quote_name(WebhookEvent._meta.db_table)
    payload_param = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    received_at = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (delivery_id, event_type, object_id, live_mode, raw_body, payload, status, attempts,"  # noqa: S608
            f" error, received_at) VALUES (%s, %s, %s, %s, %s, {payload_param}, %s, 0, '', %s)"
            " ON CONFLICT (delivery_id) DO NOTHING RETURNING id",
            [delivery_id, event_type, object_id, live_mode, text, json.dumps(payload), WebhookEvent.Status.RECEIVED, received_at],
        )
        row = cursor.fetchone()
    if row:
        return cast(int, row[0]), True  # the RETURNING id column
    return WebhookEvent.objects.values_list("pk", flat=True).get(delivery_id=delivery_id), False


def _reject_constant(value: str) -> NoReturn:
    raise ValueError(f"{value} is not valid JSON")


def _payload_parse(body: bytes) -> tuple[JsonObject, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeRejected("body is not UTF-8", reason=Reason.MALFORMED_BODY) from exc
    try:
        # NaN/Infinity are not JSON and PostgreSQL's jsonb refuses them: reject, don't 500.
        payload = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise IntakeRejected("body is not JSON", reason=Reason.MALFORMED_BODY) from exc
    if not isinstance(payload, dict):
        raise IntakeRejected("body is not a JSON object", reason=Reason.MALFORMED_BODY)
    event_type = payload.get("event_type")
    if not isinstance(event_type, str) or not event_type.strip() or len(event_type) > 100:
        raise IntakeRejected("event_type missing or malformed", reason=Reason.MALFORMED_BODY)
    if "\x00" in text or not _storable(payload):
        # NUL characters and lone surrogates cannot be stored in PostgreSQL text/jsonb.
        raise IntakeRejected("body holds characters we cannot store", reason=Reason.MALFORMED_BODY)
    return payload, text


def _storable(value: object, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k, depth + 1) and _storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v, depth + 1) for v in value)
    return True


def _live_mode(payload: JsonObject) -> bool | None:
    """Test-mode events say `live_mode: false` at the root, inside `checkout`, or carry a
    `sandbox_id`; subscription events may say nothing (None: we cannot tell)."""
    checkout = payload["checkout"] if isinstance(payload.get("checkout"), dict) else {}
    for value in (payload.get("live_mode"), checkout.get("live_mode")):
        if isinstance(value, bool):
            return value
    if payload.get("sandbox_id"):
        return False
    return None


def _enqueue_after_commit(event_id: int) -> None:
    from .tasks import process_webhook_event

    # robust: a broker that is down must not turn a stored delivery into an error answer
    # (Svix would resend something we already have); the sweep picks the event up later.
    transaction.on_commit(lambda: process_webhook_event.delay(event_id), robust=True)


# --- Processing ----------------------------------------------------------------------------------

class WebhookEventFailed(Exception):
    """The handler failed; the event is marked failed. `retry_in` is None when we gave up."""

    def __init__(self, message: str, *, retry_in: int | None) -> None:
        super().__init__(message)
        self.retry_in = retry_in


def retry_delay_seconds(attempts: int) -> int:
    # cast: int ** int is typed Any (a negative exponent gives a float); this exponent is never negative.
    return min(RETRY_BASE_SECONDS * cast(int, 2 ** max(attempts - 1, 0)), RETRY_MAX_SECONDS)


def webhook_event_process(*, event_id: int) -> str | None:
    """Process one stored event once. Returns its final status, or None if another worker has
    it or it is already done. Raises WebhookEventFailed when the handler failed."""
    now = timezone.now()
    event = _event_claim(event_id=event_id, now=now)
    if event is None:
        logger.info("event %s is not claimable (done or in progress elsewhere)", event_id)
        return None
    mine = Q(pk=event.pk, status=WebhookEvent.Status.PROCESSING, processing_started_at=now)

    reason = _ignore_reason(event)
    if reason:
        WebhookEvent.objects.filter(mine).update(status=WebhookEvent.Status.IGNORED, error=reason, processed_at=timezone.now())
        logger.info("event %s (%s) ignored: %s", event.pk, event.event_type, reason)
        return WebhookEvent.Status.IGNORED

    # Never None here: _ignore_reason answered "" only because a handler exists.
    handler = cast(handlers.Handler, handlers.handler_for(event.event_type))
    try:
        with transaction.atomic():
            # Held until commit: the proof to other workers that this attempt is alive.
            if not list(WebhookEvent.objects.select_for_update().filter(mine).values_list("pk", flat=True)):
                logger.warning("event %s: claim taken over by another worker; stopping", event.pk)
                return None
            note = handler(event)
            # Same transaction as the handler's writes: "processed" and its effects commit together.
            WebhookEvent.objects.filter(mine).update(status=WebhookEvent.Status.PROCESSED, error="", processed_at=timezone.now())
    except handlers.EventIgnored as exc:
        WebhookEvent.objects.filter(mine).update(status=WebhookEvent.Status.IGNORED, error=str(exc)[:2000], processed_at=timezone.now())
        logger.info("event %s (%s) ignored: %s", event.pk, event.event_type, exc)
        return WebhookEvent.Status.IGNORED
    except handlers.PayloadError as exc:
        _failure_record(event=event, mine=mine, error=f"PayloadError: {exc}", retry=False)
        raise WebhookEventFailed(str(exc), retry_in=None) from exc
    except Exception as exc:
        retry_in = _failure_record(event=event, mine=mine, error=_error_text(exc), retry=True)
        raise WebhookEventFailed(f"{type(exc).__name__}: {exc}", retry_in=retry_in) from exc
    logger.info("event %s (%s %s) processed: %s", event.pk, event.event_type, event.object_id, note)
    return WebhookEvent.Status.PROCESSED


def _event_claim(*, event_id: int, now: datetime) -> WebhookEvent | None:
    """Claim the event for one attempt (a committed write, so the attempt counts even if the
    worker dies), or None. A `processing` event that no live transaction holds locked lost its
    worker (a redelivered task after a SIGKILL, or the sweep) and is taken over at once."""
    claimable = Q(status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED, WebhookEvent.Status.PROCESSING])
    with transaction.atomic():
        candidates = WebhookEvent.objects.filter(claimable, pk=event_id)
        if connection.features.has_select_for_update_skip_locked:
            event = candidates.select_for_update(skip_locked=True).first()
        else:
            event = candidates.exclude(status=WebhookEvent.Status.PROCESSING, processing_started_at__gte=now - STALE_PROCESSING).first()
        if event is None:
            return None
        died = event.status == WebhookEvent.Status.PROCESSING
        if died and event.attempts >= MAX_ATTEMPTS:
            _failure_record(
                event=event, mine=Q(pk=event.pk, status=WebhookEvent.Status.PROCESSING, processing_started_at=event.processing_started_at),
                error=f"The worker died during each of {event.attempts} attempts (killed, out of memory, or past the time limit).",
                retry=False,
            )
            return None
        if died:
            logger.warning("event %s: no live worker holds its claim (attempt %s; its worker died); taking over", event.pk, event.attempts)
        WebhookEvent.objects.filter(pk=event.pk).update(
            status=WebhookEvent.Status.PROCESSING, processing_started_at=now, attempts=F("attempts") + 1, next_retry_at=None,
        )
    event.refresh_from_db()
    return event


def _ignore_reason(event: WebhookEvent) -> str:
    if event.live_mode is not None and event.live_mode != settings.RECURRENTE_LIVE_MODE:
        deployment = "live" if settings.RECURRENTE_LIVE_MODE else "test"
        return f"live_mode={str(event.live_mode).lower()} does not match this {deployment} deployment"
    if handlers.handler_for(event.event_type) is None:
        return f"no handler for {event.event_type}"
    return ""


def _error_text(exc: Exception) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = "".join(f"  {f.filename}:{f.lineno} in {f.name}\n" for f in frames)
    return ("".join(lines) + where)[:2000]


def _failure_record(*, event: WebhookEvent, mine: Q, error: str, retry: bool) -> int | None:
    attempts = event.attempts
    retry_in = retry_delay_seconds(attempts) if retry and attempts < MAX_ATTEMPTS else None
    next_retry_at = timezone.now() + timedelta(seconds=retry_in) if retry_in is not None else None
    WebhookEvent.objects.filter(mine).update(status=WebhookEvent.Status.FAILED, error=error, next_retry_at=next_retry_at)
    first_line = error.splitlines()[0] if error else ""
    if retry_in is not None:
        logger.warning("event %s (%s) failed (attempt %s), retry in %ss: %s", event.pk, event.event_type, attempts, retry_in, first_line)
        return retry_in
    logger.error("event %s (%s) failed (attempt %s); no more automatic retries: %s", event.pk, event.event_type, attempts, first_line)
    email_alert_staff(
        subject=f"Webhook event {event.pk} ({event.event_type}) failed",
        body=(
            f"Event {event.pk} (delivery {event.delivery_id}, {event.event_type} {event.object_id}) failed after "
            f"{attempts} attempt(s) and will not be retried automatically.\n\nError:\n{error}\n\n"
            "Fix the cause, then use the admin action \"Reprocess\" or `manage.py reprocess_webhooks`."
        ),
        dedupe_key=f"webhook-failed:{event.pk}",
    )
    return None


# --- Re-driving ----------------------------------------------------------------------------------

def webhook_events_due(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> list[int]:
    """Events a lost message, a dead worker or a lost retry left unfinished."""
    now = now or timezone.now()
    due = (
        Q(status=WebhookEvent.Status.RECEIVED, received_at__lt=now - RECEIVED_GRACE)
        | Q(status=WebhookEvent.Status.PROCESSING, processing_started_at__lt=now - _processing_presumed_dead_after())
        | Q(status=WebhookEvent.Status.FAILED, next_retry_at__lt=now - RETRY_GRACE)
    )
    return list(WebhookEvent.objects.filter(due).order_by("received_at").values_list("pk", flat=True)[:limit])


def _processing_presumed_dead_after() -> timedelta:
    # With row locks the claim itself skips live attempts; the sweep only needs to spare its moment.
    return INTERRUPTED_PROCESSING if connection.features.has_select_for_update_skip_locked else STALE_PROCESSING


def webhook_events_sweep(*, now: datetime | None = None) -> int:
    from .tasks import process_webhook_event

    event_ids = webhook_events_due(now=now)
    for event_id in event_ids:
        process_webhook_event.delay(event_id)
    if event_ids:
        logger.warning("webhook sweep re-drove %s event(s): %s", len(event_ids), event_ids[:20])
    return len(event_ids)


def webhook_events_reprocess(*, event_ids: Iterable[int], include_ignored: bool = True, run_now: bool = False) -> list[int]:
    """Staff asked to try these again (admin action, management command). Failed events (and
    ignored ones, e.g. after adding a handler) go back to `received` and are processed again;
    handlers are idempotent, so this never applies a payment twice."""
    statuses = [WebhookEvent.Status.FAILED] + ([WebhookEvent.Status.IGNORED] if include_ignored else [])
    with transaction.atomic():
        ids = list(
            WebhookEvent.objects.select_for_update().filter(pk__in=list(event_ids), status__in=statuses).values_list("pk", flat=True)
        )
        WebhookEvent.objects.filter(pk__in=ids).update(status=WebhookEvent.Status.RECEIVED, next_retry_at=None)
        if not run_now:
            for event_id in ids:
                _enqueue_after_commit(event_id)
    logger.info("reprocess requested for %s event(s): %s", len(ids), ids[:20])
    if run_now:
        for event_id in ids:
            try:
                webhook_event_process(event_id=event_id)
            except WebhookEventFailed as exc:
                logger.warning("event %s failed again: %s", event_id, exc)
    return ids
