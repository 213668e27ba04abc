"""Refunds (DESIGN §8): keyed by Recurrente's refund id, because the refund object names no payment.

- Staff ask in admin (`payment_refund_request`): `POST /refunds`, whose answer is authoritative.
  A `Refund` row is written with the re_ id it gives; `succeeded` marks the payment refunded at
  once (customer emailed), `pending` is polled by the reconciler (`refunds_poll`) with
  `GET /refunds/{id}` until final, `failed`/`voided` make the payment refundable again and tell staff.
- A refund made in Recurrente's dashboard is recorded by staff with its re_ id
  (`refund_record_from_dashboard`): its state is read from the API, with the same effects.
- A `refund.*` webhook, if one ever comes (none is documented), is matched by its re_ id only
  (`refund_event_record`); an unmatched one is stored for staff, never retried in a loop.

Every state change goes through `_refund_state_apply`, with the payment row locked, so the create
answer, a poll, a webhook and staff recording the same refund at once apply it once.

The HTTP call for a new refund is made with no row locked. Two staff members clicking "refund" at
once are kept from sending two requests by a short in-flight marker in the shared cache; a payment
that already has a pending or succeeded refund is refused before Recurrente is asked, and the
database refuses a second live refund per payment whatever races.

A request that gets no clear answer (a read timeout, a connection dropped after sending, a 5xx, a
redirect) may have been acted on: Recurrente's answer was the only link to the refund, and the
refund object names no payment, so nothing can be polled. The payment is marked
`refund_outcome_unknown_since` and no refund is asked for again until staff resolve it from
Recurrente's dashboard: recording the refund they find there ("Record a dashboard refund"), or
saying no refund was made (`payment_refund_outcome_none`). A connection that was never made
(refused, DNS, connect timeout) changed nothing and is reported as such.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from checkout import emails
from checkout.clients import recurrente_client
from checkout.ledger import Outcome
from checkout.models import CheckoutSession, Payment, Refund
from checkout.recurrente import (
    JsonObject,
    RecurrenteError,
    RecurrenteNotFound,
    RecurrenteNotSent,
    RecurrenteRedirect,
    RecurrenteUnavailable,
    RecurrenteValidationError,
)
from checkout.recurrente_data import PayloadError, RefundState, payment_references_of, recurrente_id, refund_state_from
from customers.models import CustomerUser
from webmagic.emails import email_alert_staff
from webmagic.money import format_money

logger = logging.getLogger(__name__)

# Longer than the client's connect + read timeouts, so the marker outlives one Recurrente call.
IN_FLIGHT_SECONDS = 60
CACHE_ERRORS = (RedisError,)  # what Django's RedisCache raises when Redis is down or slow
# Minutes after the request at which a pending refund is asked about, then hourly.
POLL_SCHEDULE_MINUTES = (2, 5, 15, 60)
POLL_EVERY_AFTER = timedelta(hours=1)


class RefundRefused(Exception):
    """We did not ask Recurrente: the payment cannot be refunded (again). Message for staff."""


class RefundFailed(Exception):
    """Recurrente did not accept the refund; nothing was changed. Message for staff."""


class RefundOutcomeUnknown(Exception):
    """Recurrente may or may not have refunded: the payment is marked and blocked until staff
    check the dashboard. Message for staff."""


# How staff resolve an unknown outcome; repeated wherever they are told about one.
UNKNOWN_OUTCOME_HOW_TO = (
    "Check the payment in Recurrente's dashboard. If it was refunded there, record that refund here "
    "(Refunds → Record a dashboard refund, with its re_ id); if it was not, select the payment and use "
    "\"Refund outcome checked: no refund was made\". Until then it cannot be refunded again from here."
)


# --- Staff asks for a refund ---------------------------------------------------------------------

@dataclass(frozen=True)
class RefundRequestResult:
    refund: Refund | None  # None when Recurrente accepted but gave no refund id
    payment: Payment

    def message(self) -> str:
        reference = self.payment.recurrente_payment_id
        if self.refund is None:
            return (f"Recurrente accepted the refund of {reference} but gave no refund id: find it in Recurrente's "
                    "dashboard and record it here (Refunds → Record a dashboard refund).")
        status = self.refund.status
        if status == Refund.Status.SUCCEEDED:
            return f"Refunded {reference} ({self.refund.recurrente_refund_id}); the customer was emailed."
        if status == Refund.Status.PENDING:
            return (f"Refund {self.refund.recurrente_refund_id} of {reference} is pending at Recurrente; it is checked "
                    "again automatically until it is final.")
        return f"Recurrente answered that refund {self.refund.recurrente_refund_id} of {reference} is {status}; nothing was refunded."


def payment_refund_request(
    *, payment_id: int, staff_user: CustomerUser | None, source: str = Refund.Source.STAFF_REQUEST,
) -> RefundRequestResult:
    """Ask Recurrente to refund the payment in full and apply its answer. Raises RefundRefused or
    RefundFailed (nothing changed), or RefundOutcomeUnknown (the payment is marked and blocked).
    `source`: who asked (staff in admin, or the automatic refund of a site sold first)."""
    payment = Payment.objects.get(pk=payment_id)
    _refundable_or_raise(payment)
    marker = f"refund-in-flight:{payment.pk}"
    _in_flight_claim_or_raise(marker=marker, payment=payment, staff_user=staff_user)
    try:
        # Read again under the marker: a request that finished between our first read and the
        # marker (perhaps leaving the outcome unknown) has committed what it learnt by now.
        payment = Payment.objects.get(pk=payment_id)
        _refundable_or_raise(payment)
        kwargs = _refund_target(payment)
        answer = _refund_post(payment=payment, kwargs=kwargs, staff_user=staff_user)
        try:
            state = refund_state_from(answer)
        except PayloadError:
            return _refund_untracked(payment=payment, answer_status=str(answer.get("status"))[:20], staff_user=staff_user)
        # Logged before anything can fail: from here on the re_ id is the only link to money that
        # may already be on its way back.
        logger.info("payment %s: Recurrente accepted refund %s (%s)", payment.pk, state.refund_id, state.status or "no status")
        try:
            with transaction.atomic():
                payment = Payment.objects.select_for_update(of=("self",)).select_related("site").get(pk=payment.pk)
                refund = _refund_row(
                    state=state, payment=payment, source=source, requested_by=staff_user,
                )
                # No status (the shape is unverified) is not proof the money went back: poll it.
                _refund_state_apply(refund=refund, payment=payment, state=state, news=True)
        except Exception as exc:
            _refund_unrecorded(payment=payment, state=state, error=exc)
            raise RefundFailed(
                f"Recurrente accepted refund {state.refund_id} ({state.status or 'no status'}) of "
                f"{payment.recurrente_payment_id}, but recording it failed ({type(exc).__name__}: {exc}). Record it "
                "with Refunds → Record a dashboard refund; do not refund again."
            ) from exc
        logger.info("payment %s: refund %s requested by staff %s, answer %s", payment.pk, refund.recurrente_refund_id,
                    getattr(staff_user, "pk", None), state.status or "(no status)")
        return RefundRequestResult(refund=refund, payment=payment)
    finally:
        try:
            cache.delete(marker)
        except CACHE_ERRORS:
            logger.warning("payment %s: refund in-flight marker not removed (cache down); it expires in %ss", payment.pk, IN_FLIGHT_SECONDS)


def _in_flight_claim_or_raise(*, marker: str, payment: Payment, staff_user: CustomerUser | None) -> None:
    """Two staff pressing Refund at once must not send two requests. Without the cache we cannot
    tell, so nobody refunds until it is back (fail closed: a double refund is money lost)."""
    try:
        claimed = cache.add(marker, staff_user.pk if staff_user else 0, timeout=IN_FLIGHT_SECONDS)
    except CACHE_ERRORS as exc:
        logger.warning("payment %s: refund refused, the cache is down (%s)", payment.pk, type(exc).__name__)
        raise RefundRefused(
            f"Refunds cannot be requested while the cache (Redis) is down: nothing was sent for "
            f"{payment.recurrente_payment_id}. Try again in a few minutes (/healthz/ shows when the cache is back)."
        ) from exc
    if not claimed:
        raise RefundRefused(f"A refund of {payment.recurrente_payment_id} is being requested right now; reload in a minute.")


def _refund_target(payment: Payment) -> dict[str, str]:
    """Newer accounts refund by intent (in_…), older ones by payment (pa_…): send what we have, but
    never an intent id other payments share (renewals may carry their checkout's)."""
    intent_is_ours_alone = bool(payment.recurrente_intent_id) and not Payment.objects.filter(
        recurrente_intent_id=payment.recurrente_intent_id
    ).exclude(pk=payment.pk).exists()
    if intent_is_ours_alone:
        return {"intent_id": payment.recurrente_intent_id}
    return {"payment_intent_id": payment.recurrente_payment_id}


def _refund_post(*, payment: Payment, kwargs: dict[str, str], staff_user: CustomerUser | None) -> JsonObject:
    try:
        return recurrente_client().create_refund(**kwargs)
    except RecurrenteNotSent as exc:
        logger.warning("payment %s: refund request not sent (%s)", payment.pk, type(exc).__name__)
        raise RefundFailed(
            f"Could not reach Recurrente to refund {payment.recurrente_payment_id} ({exc}). Nothing was changed; "
            "try again later."
        ) from exc
    except (RecurrenteUnavailable, RecurrenteRedirect) as exc:
        if exc.status == 429:  # refused before it was looked at: nothing happened
            raise RefundFailed(
                f"Recurrente is busy (HTTP 429) and did not refund {payment.recurrente_payment_id}. Nothing was changed; "
                "try again later."
            ) from exc
        raise _refund_outcome_unknown_record(payment=payment, staff_user=staff_user, error=exc) from exc
    except RecurrenteValidationError as exc:
        details = "; ".join(f"{name}: {', '.join(map(str, problems))}" for name, problems in exc.errors.items()
                            if isinstance(problems, list))
        logger.warning("payment %s: Recurrente refused the refund (%s) requested by staff %s",
                       payment.pk, exc.status, getattr(staff_user, "pk", None))
        raise RefundFailed(
            f"Recurrente refused to refund {payment.recurrente_payment_id} (HTTP {exc.status}): {exc}"
            + (f" — {details}" if details else "")
            + f". Sent {', '.join(kwargs)}. Nothing was changed."
        ) from exc
    except RecurrenteNotFound as exc:
        logger.warning("payment %s: Recurrente does not know it (%s)", payment.pk, ", ".join(kwargs))
        raise RefundFailed(
            f"Recurrente does not know {next(iter(kwargs.values()))} (HTTP 404); refund it from Recurrente's dashboard "
            "and record the refund here. Nothing was changed."
        ) from exc
    except RecurrenteError as exc:
        logger.warning("payment %s: refund request failed (%s)", payment.pk, type(exc).__name__)
        raise RefundFailed(
            f"Could not refund {payment.recurrente_payment_id}: {exc}"
            + (f" (HTTP {exc.status})" if exc.status else "") + ". Nothing was changed; try again later."
        ) from exc
    except ValueError as exc:  # a malformed id refused by the client before any request
        raise RefundFailed(f"Could not refund {payment.recurrente_payment_id}: {exc}.") from exc


def _refund_outcome_unknown_record(
    *, payment: Payment, staff_user: CustomerUser | None, error: RecurrenteError,
) -> RefundOutcomeUnknown:
    """The request may have reached Recurrente and been acted on, and nothing tells us (the refund
    object, which names no payment, was the answer we lost). Mark the payment so no second refund
    is asked for, tell staff how to find out, and return the error to raise."""
    reason = f"{error}" + (f" (HTTP {error.status})" if error.status else "")
    now = timezone.now()
    with transaction.atomic():
        payment = Payment.objects.select_for_update(of=("self",)).select_related("site").get(pk=payment.pk)
        if payment.status == Payment.Status.SUCCEEDED and payment.refund_outcome_unknown_since is None:
            payment.refund_outcome_unknown_since = now
            payment.flag_note = _note(payment, f"refund requested by staff {getattr(staff_user, 'pk', None)}: no clear "
                                               f"answer from Recurrente ({reason}), outcome unknown")
            payment.save(update_fields=["refund_outcome_unknown_since", "flag_note", "updated_at"])
        email_alert_staff(
            subject=f"Refund of {payment.recurrente_payment_id}: outcome unknown",
            body=(f"A refund of payment {payment.recurrente_payment_id} ({format_money(payment.amount, payment.currency)}, "
                  f"site {payment.site.slug}) was requested at {now:%Y-%m-%d %H:%M} UTC, but Recurrente gave no clear "
                  f"answer: {reason}. It may or may not have refunded the payment.\n{UNKNOWN_OUTCOME_HOW_TO}"),
            dedupe_key=f"refund-unknown:{payment.recurrente_payment_id}:{now:%Y%m%d%H%M%S}",
        )
    logger.error("payment %s: refund requested by staff %s got no clear answer (%s); outcome unknown",
                 payment.pk, getattr(staff_user, "pk", None), type(error).__name__)
    return RefundOutcomeUnknown(
        f"The refund of {payment.recurrente_payment_id} got no clear answer from Recurrente ({reason}): the outcome is "
        f"unknown, Recurrente may or may not have refunded it. {UNKNOWN_OUTCOME_HOW_TO}"
    )


def payment_refund_outcome_none(*, payment_id: int, staff_user: CustomerUser | None) -> bool:
    """Staff checked Recurrente's dashboard after an unknown outcome and found no refund: the
    payment can be refunded again. False if its outcome was not unknown (nothing changed)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update(of=("self",)).get(pk=payment_id)
        if payment.refund_outcome_unknown_since is None:
            return False
        payment.refund_outcome_unknown_since = None
        payment.flag_note = _note(payment, f"staff {getattr(staff_user, 'pk', None)} checked Recurrente: no refund was made")
        payment.save(update_fields=["refund_outcome_unknown_since", "flag_note", "updated_at"])
    logger.info("payment %s: unknown refund outcome resolved by staff %s: no refund was made",
                payment.pk, getattr(staff_user, "pk", None))
    return True


def _refund_untracked(*, payment: Payment, answer_status: str, staff_user: CustomerUser | None) -> RefundRequestResult:
    """Recurrente accepted (2xx) but its answer has no re_ id: the money may be on its way back and
    nothing can be polled. The payment waits for staff to record the refund from the dashboard."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update(of=("self",)).select_related("site").get(pk=payment.pk)
        if payment.status == Payment.Status.SUCCEEDED:
            payment.status = Payment.Status.REFUND_PENDING
            payment.flag_note = _note(payment, "refund accepted by Recurrente without a refund id; record it from the dashboard")
            payment.save(update_fields=["status", "flag_note", "updated_at"])
        email_alert_staff(
            subject=f"Refund of {payment.recurrente_payment_id} has no refund id",
            body=(f"Recurrente accepted the refund of payment {payment.recurrente_payment_id} (site {payment.site.slug}, "
                  f"answer status {answer_status or 'none'}) but gave no refund id, so it cannot be followed. Find the refund "
                  "in Recurrente's dashboard and record its re_ id in admin (Refunds → Record a dashboard refund)."),
            dedupe_key=f"refund-untracked:{payment.recurrente_payment_id}",
        )
    logger.error("payment %s: refund accepted without a refund id (staff %s)", payment.pk, getattr(staff_user, "pk", None))
    return RefundRequestResult(refund=None, payment=payment)


def _refund_unrecorded(*, payment: Payment, state: RefundState, error: Exception) -> None:
    """Recurrente accepted a refund our records could not take: tell staff its re_ id."""
    logger.exception("payment %s: refund %s was accepted by Recurrente but could not be recorded", payment.pk, state.refund_id)
    email_alert_staff(
        subject=f"Refund {state.refund_id} of {payment.recurrente_payment_id} accepted but not recorded",
        body=(f"Recurrente accepted refund {state.refund_id} ({state.status or 'no status'}) of payment "
              f"{payment.recurrente_payment_id}, but recording it failed ({type(error).__name__}). Record it in admin "
              "(Refunds → Record a dashboard refund) so the payment and the customer are updated; do not refund again."),
        dedupe_key=f"refund-unrecorded:{state.refund_id}",
    )


def _refundable_or_raise(payment: Payment) -> None:
    if payment.refund_outcome_unknown_since is not None:
        raise RefundRefused(
            f"A refund of {payment.recurrente_payment_id} requested at {payment.refund_outcome_unknown_since:%Y-%m-%d %H:%M} "
            f"UTC got no clear answer, so Recurrente may already have refunded it. {UNKNOWN_OUTCOME_HOW_TO}"
        )
    if payment.status == Payment.Status.REFUNDED:
        raise RefundRefused(f"{payment.recurrente_payment_id} is already refunded.")
    if payment.status == Payment.Status.REFUND_PENDING or payment.recurrente_refund_id:
        raise RefundRefused(
            f"{payment.recurrente_payment_id} already has a refund requested"
            + (f" ({payment.recurrente_refund_id})" if payment.recurrente_refund_id else "")
            + "; waiting for Recurrente to confirm it."
        )


# --- Staff record a refund made in Recurrente's dashboard ----------------------------------------

def refund_record_from_dashboard(*, payment_id: int, refund_id: str, staff_user: CustomerUser | None) -> Refund:
    """Link a refund made outside the app to our payment, with the effects of any other refund.
    Its state comes from `GET /refunds/{id}` (asked before any row is locked). Raises RefundRefused
    or RefundFailed."""
    refund_id = refund_id.strip()
    if not recurrente_id(refund_id, "re_"):
        raise RefundRefused("A Recurrente refund id starts with re_ (for example re_3jfrywsf).")
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None:
        raise RefundRefused("No such payment.")
    existing = Refund.objects.filter(recurrente_refund_id=refund_id).first()
    if existing is not None and existing.payment_id not in (None, payment.pk):
        # cast: this refund is linked to another payment (checked just above).
        raise RefundRefused(f"{refund_id} is already recorded for payment {cast(Payment, existing.payment).recurrente_payment_id}.")
    try:
        state = refund_state_from(recurrente_client().get_refund(refund_id))
    except RecurrenteNotFound as exc:
        raise RefundFailed(f"Recurrente does not know {refund_id}; check the id in its dashboard. Nothing was recorded.") from exc
    except (RecurrenteError, PayloadError) as exc:
        raise RefundFailed(f"Could not read {refund_id} from Recurrente ({exc}); nothing was recorded, try again later.") from exc
    if state.refund_id != refund_id:
        raise RefundFailed(f"Recurrente answered about {state.refund_id} when asked for {refund_id}; nothing was recorded.")
    with transaction.atomic():
        payment = Payment.objects.select_for_update(of=("self",)).select_related("site").get(pk=payment.pk)
        refund = Refund.objects.select_for_update().filter(recurrente_refund_id=refund_id).first()
        linked = refund is None or refund.payment_id is None
        if refund is None:
            refund = _refund_row(state=state, payment=payment, source=Refund.Source.DASHBOARD, requested_by=staff_user)
        elif refund.payment_id is None:
            refund.payment = payment
            refund.requested_by = refund.requested_by or staff_user
            refund.save(update_fields=["payment", "requested_by", "updated_at"])
        # Staff say which payment this refund is: that is news for the payment even when the
        # refund itself was already final (an unmatched row a webhook left).
        _refund_state_apply(refund=refund, payment=payment, state=state, news=linked)
    logger.info("refund %s recorded for payment %s by staff %s (%s)", refund_id, payment.pk,
                getattr(staff_user, "pk", None), refund.status)
    return refund


# --- Refund events and polling -------------------------------------------------------------------

def refund_event_record(*, data: JsonObject) -> str:
    """A `refund.*` webhook. Matched by its re_ id only; unmatched ones are kept for staff (no
    retry loop: there is nothing a retry could learn). Raises PayloadError without a re_ id."""
    state = refund_state_from(data)
    with transaction.atomic():
        refund, payment = _refund_and_payment_lock(refund_id=state.refund_id)
        if refund is None:
            refund = _refund_row(state=state, payment=None, source=Refund.Source.WEBHOOK, requested_by=None)
            if refund.payment_id is not None:
                # Staff's request for this very refund committed while we inserted: it is matched
                # after all (its transaction is over, so locking its payment now cannot deadlock).
                payment = Payment.objects.select_for_update(of=("self",)).select_related("site").get(pk=refund.payment_id)
                changed = _refund_state_apply(refund=refund, payment=payment, state=state, now_poll=not state.status)
                return Outcome.RECORDED if changed else Outcome.DUPLICATE
            _refund_state_apply(refund=refund, payment=None, state=state, now_poll=not state.status)
            logger.warning("refund %s reported by webhook matches no refund of ours; kept for staff", state.refund_id)
            email_alert_staff(
                subject=f"Refund {state.refund_id} at Recurrente matches no payment of ours",
                body=(f"Recurrente reported refund {state.refund_id} ({state.status or 'no status'}, "
                      f"{_amount_text(state)}). It was not requested from admin, so it was probably made in "
                      "Recurrente's dashboard. Find its payment there and record it in admin (Refunds → Record a "
                      "dashboard refund) so the payment and the customer are updated."),
                dedupe_key=f"refund-unmatched:{state.refund_id}",
            )
            return Outcome.UNMATCHED
        if payment is None:
            return Outcome.DUPLICATE
        changed = _refund_state_apply(refund=refund, payment=payment, state=state, now_poll=not state.status)
    return Outcome.RECORDED if changed else Outcome.DUPLICATE


@dataclass
class PollResult:
    checked: int = 0
    finalized: list[str] = field(default_factory=list)  # "re_… succeeded" lines
    errors: int = 0


def refunds_poll(*, now: datetime | None = None, limit: int = 100, stop_at: float | None = None,
                 only: list[int] | None = None) -> PollResult:
    """Ask Recurrente about pending refunds whose check is due (`stop_at`: a time.monotonic()
    deadline; `only`: these refund pks, for staff's "check now"). A failed call leaves the refund
    for a later pass; the others go on."""
    now = now or timezone.now()
    result = PollResult()
    due = Refund.objects.filter(status="pending", next_check_at__lte=now)
    if only is not None:
        due = due.filter(pk__in=only)
    due_refunds = list(due.order_by("next_check_at").values_list("pk", "recurrente_refund_id")[:limit])
    for refund_pk, refund_id in due_refunds:
        if stop_at is not None and time.monotonic() > stop_at:
            break
        result.checked += 1
        try:
            state = refund_state_from(recurrente_client().get_refund(refund_id))
            if state.refund_id != refund_id:
                raise PayloadError(f"asked about {refund_id}, Recurrente answered about {state.refund_id}")
        except (RecurrenteError, PayloadError, ValueError) as exc:
            result.errors += 1
            logger.warning("refund %s: could not read it from Recurrente (%s); asking later", refund_id, type(exc).__name__)
            Refund.objects.filter(pk=refund_pk, status="pending").update(
                next_check_at=now + timedelta(minutes=POLL_SCHEDULE_MINUTES[0]), last_error=f"{type(exc).__name__}: {exc}"[:500],
                updated_at=now,
            )
            continue
        try:
            with transaction.atomic():
                refund_or_none, payment = _refund_and_payment_lock(refund_id=refund_id)
                # cast: refunds are never deleted, and this one was just read as due.
                refund = cast(Refund, refund_or_none)
                before = refund.status
                _refund_state_apply(refund=refund, payment=payment, state=state, now=now)
        except Exception as exc:
            # One refund we cannot apply must not stop the others (or the rest of the pass).
            result.errors += 1
            logger.exception("refund %s: applying Recurrente's answer failed; asking later", refund_id)
            Refund.objects.filter(pk=refund_pk, status="pending").update(
                next_check_at=now + POLL_EVERY_AFTER, last_error=f"{type(exc).__name__}: {exc}"[:500], updated_at=now,
            )
            continue
        if refund.status != before:
            result.finalized.append(f"refund {refund_id}: {before} → {refund.status}")
    return result


# --- The one place a refund's state changes ------------------------------------------------------

def _refund_and_payment_lock(*, refund_id: str) -> tuple[Refund | None, Payment | None]:
    """Lock a refund and its payment in the order every refund path uses, payment first (staff
    requests and dashboard records start from the payment), so a poll, an event and a staff action
    on one refund wait for each other instead of deadlocking."""
    payment_id = Refund.objects.filter(recurrente_refund_id=refund_id).values_list("payment_id", flat=True).first()
    payment = Payment.objects.select_for_update(of=("self",)).select_related("site").get(pk=payment_id) if payment_id else None
    refund = Refund.objects.select_for_update().filter(recurrente_refund_id=refund_id).first()
    if refund is not None and refund.payment_id != payment_id:
        # Linked to a payment by staff between the two reads (only ever from none): lock it too.
        # cast: a refund is only ever linked (from no payment to one), never unlinked.
        payment = Payment.objects.select_for_update(of=("self",)).select_related("site").get(pk=cast(int, refund.payment_id))
    return refund, payment


def _refund_row(*, state: RefundState, payment: Payment | None, source: str, requested_by: CustomerUser | None) -> Refund:
    if payment is not None and Refund.objects.filter(payment=payment, status__in=["pending", "succeeded"]).exclude(
        recurrente_refund_id=state.refund_id
    ).exists():
        raise RefundRefused(f"{payment.recurrente_payment_id} already has a refund; a second one was not recorded.")
    try:
        with transaction.atomic():
            return Refund.objects.create(
                recurrente_refund_id=state.refund_id, payment=payment, source=source, requested_by=requested_by,
                status=Refund.Status.PENDING, currency=state.currency or (payment.currency if payment else ""),
            )
    except IntegrityError:
        # The same re_ id arrived another way a moment ago (its webhook, another click): use that row,
        # linking it to the payment if it came unmatched.
        refund = Refund.objects.select_for_update().get(recurrente_refund_id=state.refund_id)
        if refund.payment_id is None and payment is not None:
            refund.payment = payment
            refund.requested_by = refund.requested_by or requested_by
            refund.save(update_fields=["payment", "requested_by", "updated_at"])
        return refund


def _refund_state_apply(*, refund: Refund, payment: Payment | None, state: RefundState, now: datetime | None = None,
                        now_poll: bool = False, news: bool = False) -> bool:
    """With the payment (if any) and the refund locked: take Recurrente's word for the refund's
    state and give the payment the effects. Final states stay final. `news`: the refund is new
    to this payment (just requested or just linked by staff), so even an already-final state has
    effects. True if anything changed."""
    now = now or timezone.now()
    fields = {"checks", "last_error", "updated_at"}
    refund.checks += 1
    refund.last_error = ""
    for name, value in (("customer_refunded_amount", state.customer_refunded), ("account_refunded_amount", state.account_refunded),
                        ("recurrente_created_at", state.created_at)):
        if value is not None and getattr(refund, name) != value:
            setattr(refund, name, value)
            fields.add(name)
    if state.currency and refund.currency != state.currency:
        refund.currency = state.currency
        fields.add("currency")
    changed = False
    if refund.status in Refund.FINAL:
        if state.status and state.status != refund.status:
            logger.error("refund %s is %s for us but Recurrente now says %s; left as is", refund.recurrente_refund_id,
                         refund.status, state.status)
    elif state.status in Refund.FINAL:
        refund.status = state.status
        refund.finalized_at = now
        refund.next_check_at = None
        fields |= {"status", "finalized_at", "next_check_at"}
        changed = True
    else:
        # pending, or a status we cannot read: keep asking, on the back-off schedule.
        refund.next_check_at = now if now_poll else _next_check(refund=refund, now=now)
        fields.add("next_check_at")
    refund.save(update_fields=sorted(fields))
    if payment is not None:
        changed = _payment_follow_refund(payment=payment, refund=refund, now=now, news=changed or news) or changed
    return changed


def _next_check(*, refund: Refund, now: datetime) -> datetime:
    start = refund.created_at or now
    for minutes in POLL_SCHEDULE_MINUTES:
        due = start + timedelta(minutes=minutes)
        if due > now:
            return due
    return now + POLL_EVERY_AFTER


def _payment_follow_refund(*, payment: Payment, refund: Refund, now: datetime, news: bool) -> bool:
    """The payment's side of a refund's state. Safe to repeat (every email has a dedupe key); a
    failed refund acts only as news and only on the payment it holds, so a late or replayed
    answer about an old refund never reopens a payment that a newer refund is in flight for."""
    re_id = refund.recurrente_refund_id
    if news and payment.refund_outcome_unknown_since is not None:
        # Staff found this refund in the dashboard after a request with no clear answer: that was
        # the unknown, whatever the refund's state (a failed one leaves the payment refundable).
        payment.refund_outcome_unknown_since = None
        payment.flag_note = _note(payment, f"unknown refund outcome resolved: {re_id} ({refund.status})")
        payment.save(update_fields=["refund_outcome_unknown_since", "flag_note", "updated_at"])
    if refund.status == Refund.Status.SUCCEEDED:
        if payment.status == Payment.Status.REFUNDED:
            return False
        payment.status = Payment.Status.REFUNDED
        payment.refunded_at = refund.recurrente_created_at or now
        payment.recurrente_refund_id = re_id
        payment.save(update_fields=["status", "refunded_at", "recurrente_refund_id", "updated_at"])
        _refund_emails_queue(payment=payment, refund=refund)
        logger.info("payment %s refunded (%s)", payment.recurrente_payment_id, re_id)
        return True
    if refund.status == Refund.Status.PENDING:
        if payment.status != Payment.Status.SUCCEEDED:
            return False
        payment.status = Payment.Status.REFUND_PENDING
        payment.recurrente_refund_id = re_id
        payment.save(update_fields=["status", "recurrente_refund_id", "updated_at"])
        return True
    # failed / voided: the money stays with us; the payment can be refunded again.
    if not news:
        return False
    if payment.status == Payment.Status.REFUND_PENDING and payment.recurrente_refund_id in ("", re_id):
        payment.status = Payment.Status.SUCCEEDED
        payment.recurrente_refund_id = ""
        payment.save(update_fields=["status", "recurrente_refund_id", "updated_at"])
    logger.warning("refund %s of payment %s is %s", re_id, payment.recurrente_payment_id, refund.status)
    email_alert_staff(
        subject=f"Refund {re_id} of payment {payment.recurrente_payment_id} {refund.status}",
        body=(f"Recurrente reports refund {re_id} of payment {payment.recurrente_payment_id} (site {payment.site.slug}) "
              f"as {refund.status}: the money did not go back. The payment stays with us "
              f"({payment.get_status_display().lower()}) and can be refunded again from admin; check Recurrente's "
              "dashboard for the reason, and tell the customer if they were expecting it."),
        dedupe_key=f"refund:{re_id}:{refund.status}",
    )
    return True


def _refund_emails_queue(*, payment: Payment, refund: Refund) -> None:
    """The customer's refund confirmation and a note for staff (whether a refunded buyer keeps the
    site is a person's decision: transfer ownership in admin)."""
    site = payment.site
    amount = format_money(refund.customer_refunded_amount or payment.amount, refund.currency or payment.currency)
    # cast: each is read only when its id says it is there.
    to_email = (
        cast(CustomerUser, payment.user).email if payment.user_id
        else (cast(CheckoutSession, payment.checkout_session).customer_email if payment.checkout_session_id else "")
    )
    if to_email:
        emails.refund_email_queue(payment=payment, refund=refund, to_email=to_email, amount=amount)
    else:
        logger.warning("payment %s refunded but has no customer address to tell", payment.pk)
    owner_note = (
        f"The site is still {site.status}" + (f", owned by customer {site.owner_id}" if site.owner_id else "")
        + ". If this refund should take the site back, transfer it in admin."
    )
    email_alert_staff(
        subject=f"Payment {payment.recurrente_payment_id} refunded ({site.slug})",
        body=(f"Refund {refund.recurrente_refund_id} of payment {payment.recurrente_payment_id} succeeded: {amount} for "
              f"{payment.get_kind_display().lower()} of site {site.slug}.\n{owner_note}"),
        dedupe_key=f"refund:{refund.recurrente_refund_id}:succeeded",
    )


def _amount_text(state: RefundState) -> str:
    if state.customer_refunded is None:
        return "amount not given"
    return format_money(state.customer_refunded, state.currency or "USD")


def _note(payment: Payment, text: str) -> str:
    text = f"{text} ({timezone.now():%Y-%m-%d %H:%M} UTC)"
    return f"{payment.flag_note}; {text}"[-500:] if payment.flag_note else text


# --- Disputes ------------------------------------------------------------------------------------

def payment_dispute_record(*, event_type: str, data: JsonObject) -> str:
    """A `dispute.*` event (none is documented; the shape is a guess): flag the payment it names and
    alert staff. A dispute we cannot match is still worth a person's attention."""
    refs = payment_references_of(data)
    dispute_id = str(data.get("id") or "")[:64]
    with transaction.atomic():
        payments = Payment.objects.select_for_update(of=("self",)).select_related("site")
        payment = None
        if refs["payment_id"]:
            payment = payments.filter(recurrente_payment_id=refs["payment_id"]).first()
        for key, column in (("intent_id", "recurrente_intent_id"), ("checkout_id", "recurrente_checkout_id")):
            if payment is None and refs[key]:
                candidates = list(payments.filter(**{column: refs[key]})[:2])
                payment = candidates[0] if len(candidates) == 1 else None
        if payment is None:
            email_alert_staff(
                subject=f"Recurrente reported a dispute ({event_type}) we cannot match",
                body=(f"A {event_type} event ({dispute_id or 'no id'}) names no payment we know "
                      f"(references found: {', '.join(v for v in refs.values() if v) or 'none'}). Look it up in "
                      "Recurrente's dashboard: a chargeback needs an answer within its deadline."),
                dedupe_key=f"dispute-unmatched:{event_type}:{dispute_id}",
            )
            return Outcome.UNMATCHED
        if payment.flag != Payment.Flag.DISPUTED:
            payment.flag = Payment.Flag.DISPUTED
            payment.flag_note = _note(payment, f"{event_type} {dispute_id}".strip())
            payment.save(update_fields=["flag", "flag_note", "updated_at"])
        email_alert_staff(
            subject=f"Dispute on payment {payment.recurrente_payment_id} ({payment.site.slug}): {event_type}",
            body=(f"Recurrente reported {event_type} ({dispute_id or 'no id'}) for payment {payment.recurrente_payment_id} "
                  f"({format_money(payment.amount, payment.currency)}, site {payment.site.slug}). The payment is flagged "
                  "\"disputed\" in admin. Answer the dispute in Recurrente's dashboard before its deadline."),
            dedupe_key=f"dispute:{event_type}:{payment.recurrente_payment_id}:{dispute_id}",
        )
    logger.warning("payment %s disputed (%s %s)", payment.recurrente_payment_id, event_type, dispute_id)
    return Outcome.RECORDED
