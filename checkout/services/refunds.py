"""Refunds staff ask for in admin (DESIGN §8): `POST /refunds` at Recurrente, then wait for its
`refund.create` webhook (payments.payment_refund_record) to say the money went back.

The HTTP call is made with no row locked. Two staff members clicking "refund" at once are kept
from sending two refund requests by a short in-flight marker in the shared cache; a payment that
already has a refund (pending or done) is refused before Recurrente is asked. Nothing of ours
changes unless Recurrente accepted the request.
"""

import logging

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from checkout.models import Payment
from checkout.recurrente import RecurrenteError, RecurrenteNotFound, RecurrenteValidationError, recurrente_client

logger = logging.getLogger(__name__)

# Longer than the client's connect + read timeouts, so the marker outlives one Recurrente call.
IN_FLIGHT_SECONDS = 60


class RefundRefused(Exception):
    """We did not ask Recurrente: the payment cannot be refunded (again). Message for staff."""


class RefundFailed(Exception):
    """Recurrente did not accept the refund; nothing was changed. Message for staff."""


def payment_refund_request(*, payment_id: int, staff_user) -> Payment:
    """Ask Recurrente to refund the payment in full. On success the payment is `refund_pending`
    (with Recurrente's refund id when it gives one); the webhook later marks it `refunded`.
    Raises RefundRefused or RefundFailed."""
    payment = Payment.objects.get(pk=payment_id)
    _refundable_or_raise(payment)
    marker = f"refund-in-flight:{payment.pk}"
    if not cache.add(marker, staff_user.pk if staff_user else 0, timeout=IN_FLIGHT_SECONDS):
        raise RefundRefused(f"A refund of {payment.recurrente_payment_id} is being requested right now; reload in a minute.")
    try:
        # Newer accounts refund by intent (in_…), older ones by payment (pa_…): send what we have,
        # but never an intent id other payments share (renewals may carry their checkout's).
        intent_is_ours_alone = bool(payment.recurrente_intent_id) and not Payment.objects.filter(
            recurrente_intent_id=payment.recurrente_intent_id
        ).exclude(pk=payment.pk).exists()
        if intent_is_ours_alone:
            kwargs = {"intent_id": payment.recurrente_intent_id}
        else:
            kwargs = {"payment_intent_id": payment.recurrente_payment_id}
        try:
            answer = recurrente_client().create_refund(**kwargs)
        except RecurrenteValidationError as exc:
            details = "; ".join(f"{field}: {', '.join(map(str, problems))}" for field, problems in exc.errors.items()
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
                f"Recurrente does not know {next(iter(kwargs.values()))} (HTTP 404); refund it from Recurrente's dashboard. "
                "Nothing was changed."
            ) from exc
        except RecurrenteError as exc:
            logger.warning("payment %s: refund request failed (%s)", payment.pk, type(exc).__name__)
            raise RefundFailed(
                f"Could not refund {payment.recurrente_payment_id}: {exc}"
                + (f" (HTTP {exc.status})" if exc.status else "") + ". Nothing was changed; try again later."
            ) from exc
        except ValueError as exc:  # a malformed id refused by the client before any request
            raise RefundFailed(f"Could not refund {payment.recurrente_payment_id}: {exc}.") from exc
        refund_id = str(answer.get("id") or "")[:64]
        with transaction.atomic():
            payment = Payment.objects.select_for_update().get(pk=payment.pk)
            # The refund.create webhook may already have arrived while we waited: never move back.
            if payment.status == Payment.Status.SUCCEEDED:
                payment.status = Payment.Status.REFUND_PENDING
                fields = ["status", "updated_at"]
                if refund_id and not payment.recurrente_refund_id:
                    payment.recurrente_refund_id = refund_id
                    fields.append("recurrente_refund_id")
                note = f"refund requested by staff {getattr(staff_user, 'pk', '?')} on {timezone.now():%Y-%m-%d %H:%M} UTC"
                payment.flag_note = f"{payment.flag_note}; {note}"[-500:] if payment.flag_note else note
                fields.append("flag_note")
                payment.save(update_fields=fields)
        logger.info("payment %s: refund %s requested at Recurrente by staff %s (answer status %s)",
                    payment.pk, refund_id or "(no id)", getattr(staff_user, "pk", None), answer.get("status"))
        return payment
    finally:
        cache.delete(marker)


def _refundable_or_raise(payment: Payment) -> None:
    if payment.status == Payment.Status.REFUNDED:
        raise RefundRefused(f"{payment.recurrente_payment_id} is already refunded.")
    if payment.status == Payment.Status.REFUND_PENDING or payment.recurrente_refund_id:
        raise RefundRefused(
            f"{payment.recurrente_payment_id} already has a refund requested"
            + (f" ({payment.recurrente_refund_id})" if payment.recurrente_refund_id else "")
            + "; waiting for Recurrente to confirm it."
        )
