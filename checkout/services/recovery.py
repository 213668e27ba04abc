"""Abandoned checkout recovery (DESIGN §7): one reminder per person and site, a real discount,
never to someone who paid.

The scan runs every five minutes (`checkout.tasks.check_abandoned_carts`):

1. Read the due sessions (the partial-index query, no locks).
2. Ask Recurrente about each one, holding no row locks during the HTTP call. A checkout it reports
   paid is reconciled exactly as the webhook would have done it, and gets no reminder.
3. Per person and site, in one transaction: lock the sessions (`SKIP LOCKED`, so a concurrent
   tick takes other rows instead of waiting), re-check them, claim them with a conditional
   UPDATE, and queue the email with the dedupe key `recovery:<site>:h:<keyed digest of the email>`. The claim and the
   queued email commit together, so a crash leaves either both or neither; the send task moves the
   email queued → sending once, so a redelivered task never sends it twice.

`reminder_sent_at` is set only on the session whose reminder was queued, so it counts reminders.
The person's other open sessions for the site become `abandoned` without an email.
"""

import logging
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Case, CharField, Exists, F, Func, JSONField, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Cast, Concat, Replace
from django.utils import timezone
from django.utils.crypto import salted_hmac

from checkout import emails
from checkout.clients import recurrente_client
from checkout.models import CheckoutSession, Payment, Subscription
from checkout.recurrente import JsonObject, RecurrenteError, RecurrenteNotFound
from customers.models import CustomerUser
from sites.models import Site
from webmagic.models import EmailLog, EmailSuppression
from webmagic.money import discounted

from .purchase import RequestContext, SiteNotForSale, purchase_payload
from .reconcile import CheckResult, checkout_answer_apply
from .sessions import SessionOpening, checkout_lifetime, checkout_session_open

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.expressions import Combinable
    from django.db.models.sql.compiler import SQLCompiler

logger = logging.getLogger(__name__)

# Different salts, so a token made for one purpose is refused by the other.
RECOVERY_TOKEN_SALT = "checkout.recovery-link"
UNSUBSCRIBE_TOKEN_SALT = "checkout.unsubscribe-link"
# The scan must finish well inside CELERY_TASK_SOFT_TIME_LIMIT (120 s) even when Recurrente is slow
# (each call may take the client's 10 s read timeout); what is left over waits for the next tick.
SCAN_BATCH_SIZE = 200
SCAN_TIME_BUDGET_SECONDS = 60
PERSONAL_DATA_RETENTION = timedelta(days=90)
# No 0/O or 1/I: the code is read from an email and may be typed or read out to support.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10  # 32**10 ≈ 2**50 possibilities: not guessable, and it unlocks nothing by itself anyway
# What an email's context may hold about the buyer (the reminder, receipt and refund put their name
# in `customer_name`); ids, amounts, the site and the discount code are not about the person.
PERSONAL_CONTEXT_KEYS = ("customer_name", "customer_email", "full_name", "email", "name")
# Reminder dedupe keys hold a keyed digest of the address (recovery_dedupe_key). Keys written
# before that held the address itself; the cleanup turns any such key into one per session (not
# the shape of a live key, so the two can never collide).
REMINDER_KEY_SALT = "webmagic.checkout.recovery-reminder"
REMINDER_KEY_DIGEST_MARK = ":h:"
SCRUBBED_REMINDER_KEY_PREFIX = "recovery:session:"


def recovery_delay() -> timedelta:
    return timedelta(minutes=settings.ABANDONED_CART_DELAY_MINUTES)


def recovery_window() -> timedelta:
    return timedelta(hours=settings.RECOVERY_WINDOW_HOURS)


# --- Tokens and codes ---------------------------------------------------------------------------

def recovery_code_new(*, percent: int) -> str:
    return f"SAVE{percent}-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def recovery_token_make(*, session_id: uuid.UUID | str) -> str:
    """A signed session id (HMAC with SECRET_KEY). Nothing is stored: the window is checked
    against the session's `reminder_sent_at`, so the token needs no timestamp of its own."""
    return signing.Signer(salt=RECOVERY_TOKEN_SALT).sign(uuid.UUID(str(session_id)).hex)


def recovery_token_session_id(*, token: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(hex=signing.Signer(salt=RECOVERY_TOKEN_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None


def unsubscribe_token_make(*, session_id: uuid.UUID | str) -> str:
    """A signed session id, like the recovery token but under another salt: the address itself
    never appears in the URL (URLs end up in access logs and browser histories)."""
    return signing.Signer(salt=UNSUBSCRIBE_TOKEN_SALT).sign(uuid.UUID(str(session_id)).hex)


class UnsubscribeLinkExpired(Exception):
    """A genuine link whose address the 90-day cleanup removed: there is nobody left to unsubscribe."""


def unsubscribe_token_email(*, token: str) -> str | None:
    """The address a valid unsubscribe token stands for, or None (tampered or unknown).

    Raises UnsubscribeLinkExpired for a genuine link of an attempt whose buyer and reminder the
    cleanup scrubbed."""
    try:
        session_id = uuid.UUID(hex=signing.Signer(salt=UNSUBSCRIBE_TOKEN_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None
    email = CheckoutSession.objects.filter(pk=session_id).values_list("customer_email", flat=True).first()
    if email is None:
        return None  # no such session
    if not email:
        # The buyer was removed by a cleanup that did not yet scrub the reminder (before the email
        # scrub existed, the next run does it): the reminder still says where this link went.
        email = EmailLog.objects.filter(
            checkout_session_id=session_id, kind=EmailLog.Kind.RECOVERY_REMINDER,
        ).exclude(to_email="").values_list("to_email", flat=True).first()
    if not email:
        raise UnsubscribeLinkExpired()
    return _normalise(email)


def recovery_dedupe_key(*, site_id: uuid.UUID, email: str) -> str:
    """`recovery:<site>:h:<keyed digest of the address>`: one reminder per person and site, as a
    unique database value that keeps that promise after the 90-day cleanup forgets the address
    (a digest keyed with SECRET_KEY, so the table alone cannot be searched for an address;
    rotating SECRET_KEY forgets who was already reminded)."""
    digest = salted_hmac(REMINDER_KEY_SALT, _normalise(email), algorithm="sha256").hexdigest()
    return f"recovery:{site_id}{REMINDER_KEY_DIGEST_MARK}{digest}"


def _normalise(email: str) -> str:
    return (email or "").strip().lower()


# --- The scan -----------------------------------------------------------------------------------

def recovery_due_sessions(*, now: datetime) -> QuerySet[CheckoutSession]:
    """DESIGN §7 "due": open checkout, older than the delay, no reminder yet (so not completed).

    `status='checkout_created'` is written literally so PostgreSQL can use the partial index
    `checkout_abandoned_scan_idx` (its predicate), whose rows are only the open checkouts; the
    ordering matches the index, so the LIMIT stops early. Hosting checkouts are not reminded.
    """
    return (
        CheckoutSession.objects.filter(
            status="checkout_created",
            created_at__lt=now - recovery_delay(),
            reminder_sent_at__isnull=True,
            kind=CheckoutSession.Kind.PURCHASE,
            closed_at__isnull=True,  # closed by a sale (site_sold.py): nothing left to remind of
        )
        .order_by("created_at")
        .only("id", "site_id", "customer_email", "recurrente_checkout_id", "payment_in_progress_at", "created_at")
        [:SCAN_BATCH_SIZE]
    )


@dataclass
class ScanResult:
    reminded: list[uuid.UUID] = field(default_factory=list)  # session ids whose reminder was queued
    closed: list[uuid.UUID] = field(default_factory=list)  # session ids closed without a reminder
    reconciled: list[uuid.UUID] = field(default_factory=list)  # session ids Recurrente reported paid
    deferred: list[uuid.UUID] = field(default_factory=list)  # left for a later tick

    def summary(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("reminded", "closed", "reconciled", "deferred")}


def abandoned_carts_check(*, now: datetime | None = None) -> ScanResult:
    """Send the due reminders. Safe to run concurrently with itself and with webhooks."""
    now = now or timezone.now()
    deadline = time.monotonic() + SCAN_TIME_BUDGET_SECONDS
    result = ScanResult()
    # Keyed by person: (site id, normalised email).
    groups: dict[tuple[uuid.UUID, str], list[uuid.UUID]] = {}
    blocked: set[tuple[uuid.UUID, str]] = set()
    for session in recovery_due_sessions(now=now):
        person = (session.site_id, _normalise(session.customer_email))
        if time.monotonic() > deadline:
            result.deferred.append(session.pk)
            blocked.add(person)
            continue
        try:
            verdict = _recurrente_verdict(session)
        except Exception:
            # One odd answer (an unexpected shape, a reconcile that fails) must not stop the scan
            # for everybody behind it: this person waits for the next tick, staff see the log.
            logger.exception("session %s: checking checkout %s failed; trying next tick", session.pk,
                             session.recurrente_checkout_id)
            verdict = "wait"
        if verdict == "paid":
            result.reconciled.append(session.pk)
        elif verdict == "wait":
            result.deferred.append(session.pk)
        if verdict != "remind":
            # Any attempt of this person still paying (or paid) holds back their reminder.
            blocked.add(person)
            continue
        groups.setdefault(person, []).append(session.pk)
    for person, session_ids in groups.items():
        if person in blocked:
            result.deferred.extend(session_ids)
            continue
        site_id, email = person
        _person_claim(site_id=site_id, email=email, session_ids=session_ids, now=now, result=result)
    if any(result.summary().values()):
        logger.info("abandoned-cart scan: %s", result.summary())
    return result


@dataclass(frozen=True)
class SendNowResult:
    outcome: str  # reminded | closed | paid | wait | not_open
    detail: str = ""


SEND_NOW_NO_REMINDER = {
    "site_sold": "the site is no longer for sale",
    "already_bought": "this person already bought the site",
    "unsubscribed": "the address unsubscribed from reminders",
}


def recovery_reminder_send_now(*, session_id: uuid.UUID, now: datetime | None = None) -> SendNowResult:
    """Staff's "send reminder now": the scan's rules for one person and site, without waiting for
    the delay. Every open attempt of that person for the site is asked about at Recurrente (a paid
    or in-progress one holds the reminder back, as in the scan), then claimed the same way, so a
    concurrent scan tick and this action still send at most one reminder."""
    now = now or timezone.now()
    session = CheckoutSession.objects.filter(pk=session_id).first()
    if (
        session is None or session.kind != CheckoutSession.Kind.PURCHASE
        or session.status != CheckoutSession.Status.CHECKOUT_CREATED or session.reminder_sent_at is not None
        or session.closed_at is not None
    ):
        return SendNowResult("not_open", "only an open purchase checkout (checkout created, no reminder) can be reminded")
    email = _normalise(session.customer_email)
    attempts = list(
        CheckoutSession.objects.filter(
            site_id=session.site_id, customer_email=session.customer_email, status="checkout_created",
            reminder_sent_at__isnull=True, kind=CheckoutSession.Kind.PURCHASE, closed_at__isnull=True,
        ).order_by("created_at")[:SCAN_BATCH_SIZE]
    )
    for attempt in attempts:
        verdict = _recurrente_verdict(attempt)
        if verdict == "paid":
            return SendNowResult("paid", f"Recurrente reports checkout {attempt.recurrente_checkout_id} paid; recorded as a payment")
        if verdict == "wait":
            return SendNowResult("wait", "a payment is in progress or Recurrente could not be asked; try again later")
    result = ScanResult()
    reason = _no_reminder_reason(site=session.site, email=email)
    _person_claim(site_id=session.site_id, email=email, session_ids=[a.pk for a in attempts], now=now, result=result)
    if result.reminded:
        return SendNowResult("reminded")
    if session.pk in result.closed:
        return SendNowResult("closed", SEND_NOW_NO_REMINDER.get(reason, "this person was already reminded for this site"))
    return SendNowResult("not_open", "another run took this checkout first")


def _recurrente_verdict(session: CheckoutSession) -> str:
    """"remind", "paid" (reconciled here, no reminder) or "wait" (ask again next tick)."""
    if session.payment_in_progress_at:
        return "wait"  # a bank transfer was started; it can take a day and usually succeeds
    try:
        # cast: a due session's checkout was created, so it has an id (checkout_created_has_checkout_id).
        checkout = recurrente_client().get_checkout(cast(str, session.recurrente_checkout_id))
    except RecurrenteNotFound:
        # Recurrente has no such checkout, so nothing can have been paid on it.
        logger.warning("session %s: Recurrente does not know checkout %s; reminding anyway", session.pk,
                       session.recurrente_checkout_id)
        return "remind"
    except (RecurrenteError, ValueError) as exc:
        # Not knowing is not "unpaid": a missed webhook plus a discount offer could make someone pay
        # twice, while a reminder five minutes late costs nothing. The next tick asks again.
        logger.warning("session %s: could not check checkout %s with Recurrente (%s); trying next tick",
                       session.pk, session.recurrente_checkout_id, type(exc).__name__)
        return "wait"
    # A paid checkout is recorded exactly as the webhook (and the reconciler) would record it.
    try:
        result = checkout_answer_apply(session=session, answer=checkout)
    except Exception:
        # A paid answer we cannot read or record: no reminder; the reconciler and webhooks retry.
        logger.exception("session %s: applying Recurrente's answer for checkout %s failed", session.pk,
                         session.recurrente_checkout_id)
        return "wait"
    if result in (CheckResult.PAID, CheckResult.ALREADY_RECORDED):
        return "paid"
    if result in (CheckResult.IN_PROGRESS, CheckResult.ERROR):
        return "wait"
    return "remind"  # unpaid, expired (the recovery link makes a new checkout)


def _no_reminder_reason(*, site: Site, email: str) -> str:
    if not site.is_for_sale:
        return "site_sold"
    if CheckoutSession.objects.filter(site_id=site.pk, customer_email=email, status=CheckoutSession.Status.COMPLETED).exists():
        return "already_bought"
    if EmailSuppression.objects.filter(email=email).exists():
        return "unsubscribed"
    return ""


def recovery_send_time_objection(*, session: CheckoutSession) -> str:
    """Checked again when the reminder is about to go (DESIGN §7 "before sending"): a reason not
    to send it, or ""."""
    session = CheckoutSession.objects.select_related("site").get(pk=session.pk)
    if session.status == CheckoutSession.Status.COMPLETED:
        return "already_bought"
    if session.closed_reason == CheckoutSession.ClosedReason.SITE_SOLD:
        return "site_sold"
    if not session.customer_email:
        # The cleanup removed the buyer (and scrubbed this email's address): nobody to send it to.
        return "buyer_removed"
    return _no_reminder_reason(site=session.site, email=_normalise(session.customer_email))


def _person_claim(*, site_id: uuid.UUID, email: str, session_ids: list[uuid.UUID], now: datetime, result: ScanResult) -> None:
    """Claim one person's due sessions for one site and queue at most one reminder for them."""
    due = Q(status=CheckoutSession.Status.CHECKOUT_CREATED, reminder_sent_at__isnull=True, closed_at__isnull=True)
    with transaction.atomic():
        # SKIP LOCKED: rows another tick (or a webhook) holds are theirs; we never wait on them, and
        # they never wait on us for rows we do not need, so two ticks cannot deadlock.
        sessions = list(
            CheckoutSession.objects.select_for_update(skip_locked=True)
            .filter(due, pk__in=session_ids)
            .select_related("site")
            .order_by("-created_at")
        )
        if not sessions:
            return
        site = sessions[0].site
        reason = _no_reminder_reason(site=site, email=email)
        if reason:
            # Sold (to anyone) or bought by this person: the attempt is over. Unsubscribed: the
            # attempt was abandoned, we just may not say so.
            status = CheckoutSession.Status.ABANDONED if reason == "unsubscribed" else CheckoutSession.Status.EXPIRED
            stamp = "abandoned_at" if status == CheckoutSession.Status.ABANDONED else "expired_at"
            closed = CheckoutSession.objects.filter(due, pk__in=[s.pk for s in sessions]).update(
                status=status, **{stamp: now}, updated_at=now
            )
            result.closed.extend(s.pk for s in sessions)
            logger.info("site %s: %s session(s) %s closed without a reminder (%s)", site.pk, closed,
                        ",".join(str(s.pk) for s in sessions), reason)
            return

        # The newest attempt carries the reminder: its name spelling and checkout are the freshest.
        primary, siblings = sessions[0], sessions[1:]
        code = recovery_code_new(percent=settings.RECOVERY_DISCOUNT_PERCENT)
        # The conditional UPDATE is the claim: only one transaction can move the row out of "due"
        # (the lock already makes it so on PostgreSQL; this also holds where there are no row locks).
        claimed = CheckoutSession.objects.filter(due, pk=primary.pk).update(
            status=CheckoutSession.Status.ABANDONED, abandoned_at=now, reminder_sent_at=now, recovery_code=code,
            updated_at=now,
        )
        log = None
        if claimed:
            primary.reminder_sent_at, primary.recovery_code = now, code
            log = emails.recovery_reminder_email_queue(
                session=primary, site=site, to_email=email, offer_ends=recovery_offer_ends(session=primary),
                # The database refuses a second reminder for this person and site, whatever races.
                dedupe_key=recovery_dedupe_key(site_id=site.pk, email=email),
            )
            if log is None:
                # They were reminded through an earlier attempt: this one becomes a silent sibling.
                CheckoutSession.objects.filter(pk=primary.pk, recovery_code=code).update(
                    reminder_sent_at=None, recovery_code="", updated_at=now
                )
                siblings = sessions
            else:
                result.reminded.append(primary.pk)
                logger.info("session %s: recovery reminder queued as email %s", primary.pk, log.pk)
        else:
            siblings = sessions
        if siblings:
            CheckoutSession.objects.filter(due, pk__in=[s.pk for s in siblings]).update(
                status=CheckoutSession.Status.ABANDONED, abandoned_at=now, updated_at=now
            )
            result.closed.extend(s.pk for s in siblings)
            logger.info("site %s: session(s) %s abandoned without a second reminder", site.pk,
                        ",".join(str(s.pk) for s in siblings))


# --- The recovery link --------------------------------------------------------------------------

class RecoveryLinkInvalid(Exception):
    """Tampered, unknown, or for a session that was never reminded."""


class RecoveryOfferExpired(Exception):
    def __init__(self, session: CheckoutSession) -> None:
        super().__init__(f"recovery offer for session {session.pk} has ended")
        self.session = session


class RecoverySiteUnavailable(SiteNotForSale):
    def __init__(self, session: CheckoutSession, *, already_yours: bool, charged: Payment | None = None) -> None:
        super().__init__(session.site.slug)
        self.session = session
        self.already_yours = already_yours
        # Sold to someone else after this buyer paid through the offer: their refund is on its way.
        self.charged = charged


def recovery_session_get(*, token: str) -> CheckoutSession:
    session_id = recovery_token_session_id(token=token)
    session = None
    if session_id is not None:
        session = CheckoutSession.objects.select_related("site").filter(pk=session_id, reminder_sent_at__isnull=False).first()
    if session is None:
        raise RecoveryLinkInvalid()
    return session


def recovery_offer_ends(*, session: CheckoutSession) -> datetime:
    # cast: only a reminded session has an offer (callers hold one whose reminder_sent_at is set).
    return cast(datetime, session.reminder_sent_at) + recovery_window()


def recovery_checkout_start(*, token: str, request_context: RequestContext) -> CheckoutSession:
    """The discounted checkout for a reminder's link: reused while open, created otherwise.

    Raises RecoveryLinkInvalid, RecoverySiteUnavailable, RecoveryOfferExpired or CheckoutUnavailable.
    """
    original = recovery_session_get(token=token)
    _site_available_or_raise(session=original, site=original.site)
    if timezone.now() >= recovery_offer_ends(session=original):
        raise RecoveryOfferExpired(original)
    percent = settings.RECOVERY_DISCOUNT_PERCENT

    def site_check(site: Site) -> None:
        _site_available_or_raise(session=original, site=site)

    def recent(site: Site) -> QuerySet[CheckoutSession]:
        return original.recovery_checkouts.filter(
            kind=CheckoutSession.Kind.PURCHASE, discount_percent=percent, created_at__gte=timezone.now() - checkout_lifetime(),
        )

    def new_session(site: Site) -> CheckoutSession:
        return CheckoutSession.objects.create(
            site=site, kind=CheckoutSession.Kind.PURCHASE, status=CheckoutSession.Status.INITIATED,
            customer_name=original.customer_name, customer_email=original.customer_email, user=original.user,
            amount=discounted(original.amount, percent), currency=original.currency, discount_percent=percent,
            recovered_from=original, ip_address=request_context.ip_address,
            user_agent=request_context.user_agent[:500], referrer=request_context.referrer[:500],
        )

    # A double click finds the first click's session; a failed creation is retried on the same
    # `initiated` session instead of piling up new ones.
    return checkout_session_open(site_id=original.site_id, opening=SessionOpening(
        site_check=site_check, recent=recent, new_session=new_session, payload=recovery_payload,
        reusable_statuses=(CheckoutSession.Status.CHECKOUT_CREATED, CheckoutSession.Status.ABANDONED), retry_failed=True,
    ))


def _site_available_or_raise(*, session: CheckoutSession, site: Site) -> None:
    if site.is_for_sale:
        return
    email = _normalise(session.customer_email)
    owner_email = _normalise(cast(CustomerUser, site.owner).email) if site.owner_id else ""
    already_yours = bool(owner_email) and owner_email == email
    charged = None
    if not already_yours:
        charged = Payment.objects.filter(
            Q(checkout_session=session) | Q(checkout_session__recovered_from=session), flag=Payment.Flag.NEEDS_REFUND,
        ).order_by("-paid_at").first()
    raise RecoverySiteUnavailable(session, already_yours=already_yours, charged=charged)


def recovery_payload(session: CheckoutSession) -> JsonObject:
    """The purchase payload at the session's (discounted) amount, naming the code for the buyer."""
    payload = purchase_payload(session)
    original = session.recovered_from
    code = original.recovery_code if original else ""
    item = payload["items"][0]
    item["name"] = f"{item['name']} — {session.discount_percent}% off{f' ({code})' if code else ''}"[:200]
    payload["metadata"]["discount_percent"] = str(session.discount_percent)
    if original:
        payload["metadata"]["recovered_from_session_id"] = str(original.pk)
        payload["metadata"]["discount_code"] = code
    return payload


# --- Unsubscribe --------------------------------------------------------------------------------

def email_suppression_create(*, email: str, source: str) -> EmailSuppression:
    """Idempotent: unsubscribing twice (a mail client's one-click and then the page) is one row."""
    suppression, created = EmailSuppression.objects.get_or_create(email=_normalise(email), defaults={"source": source})
    if created:
        logger.info("email suppression %s created (%s)", suppression.pk, source)
    return suppression


# --- Cleanup ------------------------------------------------------------------------------------

class JSONKeysRemove(Func):
    """`context` without the given top-level keys, computed by the database (so a bulk UPDATE can
    drop them): `jsonb - text[]` on PostgreSQL, `json_remove` on SQLite (laptop mode)."""

    output_field = JSONField()

    def __init__(self, expression: "Combinable", *, keys: Iterable[str]) -> None:
        self.keys = tuple(keys)
        super().__init__(expression)

    def as_postgresql(
        self, compiler: "SQLCompiler", connection: "BaseDatabaseWrapper", **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"({sql} - %s::text[])", (*params, list(self.keys))

    def as_sqlite(
        self, compiler: "SQLCompiler", connection: "BaseDatabaseWrapper", **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.source_expressions[0])
        paths = ", ".join(["%s"] * len(self.keys))
        return f"json_remove({sql}, {paths})", (*params, *(f'$."{key}"' for key in self.keys))


def abandoned_carts_cleanup(*, now: datetime | None = None) -> dict[str, int]:
    """Daily: close attempts whose recovery chance is over, and drop personal data after 90 days.

    An open attempt expires once the reminder could have been sent (delay) and its offer could have
    been used (window): created more than delay + window ago, and, if reminded, reminded more than
    a window ago (a reminder that went out late keeps its full 48 hours). Expiring changes no money:
    a payment that still arrives completes the session (late completion). Four bulk UPDATEs.

    After 90 days every attempt loses its request data (IP, user agent, referrer), and an attempt
    that never led to money (expired, no payment or subscription names it) also loses the buyer's
    name and email, and so do the emails sent about it (see `_buyerless_emails_scrub`). What the
    funnel and the books need stays: site, kind, status, amounts, dates, email statuses, reminder
    and recovery links. A paid attempt keeps its buyer (refunds and receipts name them).
    """
    now = now or timezone.now()
    expired = CheckoutSession.objects.filter(
        Q(reminder_sent_at__isnull=True) | Q(reminder_sent_at__lt=now - recovery_window()),
        status__in=[CheckoutSession.Status.INITIATED, CheckoutSession.Status.CHECKOUT_CREATED,
                    CheckoutSession.Status.ABANDONED],
        created_at__lt=now - recovery_delay() - recovery_window(),
    ).update(status=CheckoutSession.Status.EXPIRED, expired_at=now, updated_at=now)
    old = CheckoutSession.objects.filter(created_at__lt=now - PERSONAL_DATA_RETENTION)
    stripped = old.filter(Q(ip_address__isnull=False) | ~Q(user_agent="") | ~Q(referrer="")).update(
        ip_address=None, user_agent="", referrer="", updated_at=now,
    )
    never_paid = old.filter(status=CheckoutSession.Status.EXPIRED).exclude(
        Exists(Payment.objects.filter(checkout_session=OuterRef("pk")))
        | Exists(Subscription.objects.filter(checkout_session=OuterRef("pk")))
    )
    # Emails first: they are found through the same set whether or not its buyer is already gone,
    # so an attempt anonymised before this scrub existed has its emails scrubbed on the next run.
    emails_scrubbed = _buyerless_emails_scrub(sessions=never_paid, now=now)
    anonymised = never_paid.filter(~Q(customer_name="") | ~Q(customer_email="")).update(
        customer_name="", customer_email="", updated_at=now,
    )
    logger.info("abandoned-cart cleanup: %s session(s) expired, request data removed from %s, buyer removed from %s "
                "and from %s email(s)", expired, stripped, anonymised, emails_scrubbed)
    return {"expired": expired, "stripped": stripped, "anonymised": anonymised, "emails_scrubbed": emails_scrubbed}


def _buyerless_emails_scrub(*, sessions: QuerySet[CheckoutSession], now: datetime) -> int:
    """The emails about attempts whose buyer the cleanup removes lose that buyer too (one UPDATE).

    Email logs are never deleted (they are the dedupe and delivery record), so they are scrubbed:
    no address and no name in the context. The reminder's dedupe key holds only a keyed digest of
    the address, so it stays and still stops a second reminder to that person for that site; an
    old key that held the address becomes `recovery:session:<session id hex>`. Nothing can
    ask for a reminder for these attempts again: they are expired (the scan and "send now" take
    open ones only) and a retried send finds no buyer (`recovery_send_time_objection`). Kind,
    status, dates, subject (site and offer, no name) and the session link stay, so the funnel's
    sent/opened/clicked counts do not move. By construction no receipt or welcome is among them:
    those belong to attempts a payment names, which keep their buyer.
    """
    # Only a key that still holds the address (written before keys were digests) is rewritten.
    reminder = Q(kind=EmailLog.Kind.RECOVERY_REMINDER, dedupe_key__isnull=False) & ~Q(
        dedupe_key__contains=REMINDER_KEY_DIGEST_MARK
    )
    return EmailLog.objects.filter(
        ~Q(to_email="") | Q(context__has_any_keys=list(PERSONAL_CONTEXT_KEYS)),
        checkout_session__in=sessions,
    ).update(
        to_email="",
        context=JSONKeysRemove(F("context"), keys=PERSONAL_CONTEXT_KEYS),
        dedupe_key=Case(
            When(reminder, then=Concat(Value(SCRUBBED_REMINDER_KEY_PREFIX), _uuid_hex("checkout_session_id"))),
            default=F("dedupe_key"),
        ),
        # A provider's refusal may quote the address it refused. (Replace takes any expression as
        # the text to replace; django-stubs accept only a Value there.)
        error=Replace(F("error"), F("to_email"), Value("[address removed]")),  # type: ignore[arg-type]
        updated_at=now,
    )


def _uuid_hex(field: str) -> Replace:
    """A UUID column as 32 hex digits on every database (PostgreSQL casts it with hyphens, SQLite
    stores it without), so the scrubbed key has one spelling."""
    return Replace(Cast(field, CharField()), Value("-"), Value(""))
