import uuid

from checkout.models import CheckoutSession


def session_for_success_page(*, raw_id: str | None) -> CheckoutSession | None:
    """The purchase session named in a success link; None for malformed or unknown ids.

    Session ids are random UUIDs, so the link itself is the capability; nothing else is looked up.
    """
    try:
        session_id = uuid.UUID(str(raw_id))
    except ValueError:
        return None
    return (
        CheckoutSession.objects.select_related("site")
        .filter(pk=session_id, kind=CheckoutSession.Kind.PURCHASE)
        .first()
    )


def payment_state(session: CheckoutSession) -> str:
    """What the buyer should be told: confirmed, in_progress (bank transfer) or confirming."""
    if session.status == CheckoutSession.Status.COMPLETED:
        return "confirmed"
    if session.payment_in_progress_at:
        return "in_progress"
    return "confirming"
