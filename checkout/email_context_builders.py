"""Send-time context of checkout's emails (registered in CheckoutConfig.ready() with
webmagic.emails.context_builder_register).

The recovery reminder's links carry signed tokens: they are made when it is sent, so they are never
written to the EmailLog, and the headers let mail clients offer their own one-click unsubscribe
(RFC 8058). This is apart from checkout/emails.py because it needs the recovery service, which
itself queues through checkout/emails.py (no import circles inside checkout).
"""

from django.urls import reverse

from webmagic.emails import EmailNoLongerWanted, absolute_url
from webmagic.models import EmailLog

from .services.recovery import recovery_send_time_objection, recovery_token_make, unsubscribe_token_make


def recovery_reminder_context(log: EmailLog) -> dict:
    session = log.checkout_session
    if session is None:
        raise ValueError(f"recovery email {log.pk} has no checkout session to link to")
    objection = recovery_send_time_objection(session=session)
    if objection:
        # A retry can go out minutes after the claim: by then the buyer may have paid or unsubscribed.
        raise EmailNoLongerWanted(objection)
    recovery_url = absolute_url(reverse("checkout:recover", kwargs={"token": recovery_token_make(session_id=session.pk)}))
    unsubscribe_url = absolute_url(
        reverse("checkout:unsubscribe", kwargs={"token": unsubscribe_token_make(session_id=session.pk)})
    )
    return {
        "recovery_url": recovery_url,
        "unsubscribe_url": unsubscribe_url,
        "headers": {
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
