"""The checkout app's emails: receipt, refund, "the site was sold before your payment", recovery
reminder, and the hosting emails (live, offline or cancelled, payment problem, the nudge to activate).

What each one says is in `templates/emails/<kind>.subject.txt`, `.txt` and `.html`. The functions
here choose the recipient, the context (display values only: it is written to the EmailLog) and
the dedupe key, and queue it (webmagic.emails). The services call them inside the transaction that
made the change, so an email is queued exactly when its change commits, and sent after.

The services import this module, so it imports none of them (no import circles inside checkout):
what an email needs from them, such as the owner's portal page, is passed in. The recovery
reminder's send-time context is in checkout/email_context_builders.py for the same reason.
"""

import logging
from datetime import datetime
from typing import cast

from django.conf import settings
from django.urls import reverse
from django.utils import dateformat, timezone

from checkout.models import CheckoutSession, Payment, Refund, Subscription
from customers.models import CustomerUser
from sites.models import Site
from webmagic.emails import absolute_url, email_queue
from webmagic.models import EmailLog
from webmagic.money import discounted, format_money, format_usd

logger = logging.getLogger(__name__)


# --- Purchase and refund -------------------------------------------------------------------------

def site_page_url(site: Site) -> str:
    return absolute_url(reverse("sites:page", kwargs={"slug": site.slug}))


def receipt_email_queue(*, site: Site, session: CheckoutSession, payment: Payment, user) -> EmailLog | None:
    """The receipt for a site bought: once per payment."""
    return email_queue(
        kind=EmailLog.Kind.RECEIPT, to_email=user.email,
        context={
            "customer_name": session.customer_name or user.full_name,
            "amount": format_money(payment.amount, payment.currency),
            "paid_on": dateformat.format(timezone.localtime(payment.paid_at), "F j, Y"),
            "paid_with": paid_with(payment),
            "card_last4": payment.card_last4,
            "payment_reference": payment.recurrente_payment_id,
            "site_name": site.business_name,
            "site_url": site_page_url(site),
            "portal_url": absolute_url(reverse("portal:dashboard")),
            "hosting_price": format_usd(site.monthly_amount),
            **receipt_discount(session=session, payment=payment),
        },
        dedupe_key=f"receipt:{payment.recurrente_payment_id}", user=user, checkout_session=session,
    )


def receipt_discount(*, session: CheckoutSession, payment: Payment) -> dict:
    """The receipt's "price, discount, paid" lines when the checkout carried a recovery offer;
    nothing otherwise. The price before it is the abandoned checkout's (what they were offered)."""
    if not session.discount_percent:
        return {}
    original = session.recovered_from
    before = original.amount if original is not None else session.site.purchase_amount
    return {
        "original_price": format_money(before, payment.currency),
        "discount": format_money(before - payment.amount, payment.currency),
        "discount_percent": session.discount_percent,
    }


def paid_with(payment: Payment) -> str:
    """How it was paid, as a code the templates word (emails/_paid_with.txt): card, bank_transfer
    or "" when Recurrente did not say."""
    if payment.payment_method == "card" or payment.card_last4:
        return "card"
    if payment.payment_method.startswith("bank_transfer"):
        return "bank_transfer"
    return ""


def refund_email_queue(*, payment: Payment, refund: Refund, to_email: str, amount: str) -> EmailLog | None:
    """The customer's refund confirmation: once per refund. `amount` as the customer got it back."""
    site = payment.site
    return email_queue(
        kind=EmailLog.Kind.REFUND, to_email=to_email,
        context={
            "customer_name": cast(CustomerUser, payment.user).full_name if payment.user_id else "",
            "site_name": site.business_name,
            "hosting": payment.kind != Payment.Kind.PURCHASE,
            "amount": amount,
            "refunded_on": dateformat.format(timezone.localtime(payment.refunded_at), "F j, Y"),
            "payment_reference": payment.recurrente_payment_id,
            "refund_reference": refund.recurrente_refund_id,
            "portal_url": absolute_url(reverse("portal:dashboard")),
        },
        dedupe_key=f"refund:{refund.recurrente_refund_id}", user=payment.user, checkout_session=payment.checkout_session,
    )


# --- Recovery ------------------------------------------------------------------------------------

def site_sold_refund_email_queue(*, site: Site, session: CheckoutSession, payment: Payment) -> EmailLog | None:
    """To a buyer who paid a moment after someone else bought the site: sorry, and the refund
    (started automatically) is on its way. Once per payment, to the address they gave us."""
    return email_queue(
        kind=EmailLog.Kind.SITE_SOLD_REFUND, to_email=session.customer_email,
        context={
            "customer_name": session.customer_name,
            "site_name": site.business_name,
            "amount": format_money(payment.amount, payment.currency),
            "paid_on": dateformat.format(timezone.localtime(payment.paid_at), "F j, Y"),
            "payment_reference": payment.recurrente_payment_id,
            "home_url": absolute_url(reverse("home")),
        },
        dedupe_key=f"site-sold-refund:{payment.recurrente_payment_id}", checkout_session=session,
    )


def recovery_reminder_email_queue(
    *, session: CheckoutSession, site: Site, to_email: str, offer_ends: datetime, dedupe_key: str,
) -> EmailLog | None:
    """The reminder for an abandoned checkout, on the discount its `recovery_code` holds. Display
    values only; the links (which carry tokens) are built when it is sent
    (checkout.email_context_builders)."""
    percent = settings.RECOVERY_DISCOUNT_PERCENT
    price = session.amount
    offer = discounted(price, percent)
    ends = timezone.localtime(offer_ends)
    return email_queue(
        kind=EmailLog.Kind.RECOVERY_REMINDER, to_email=to_email,
        context={
            "customer_name": session.customer_name,
            "site_name": site.business_name,
            "site_url": site_page_url(site),
            "price": format_usd(price),
            "discounted_price": format_usd(offer),
            "saving": format_usd(price - offer),
            "discount_percent": percent,
            "hosting_price": format_usd(site.monthly_amount),
            "recovery_code": session.recovery_code,
            "window_hours": settings.RECOVERY_WINDOW_HOURS,
            "offer_ends": f"{dateformat.format(ends, 'F j, Y, g:i A')} {ends.tzname()}",
        },
        dedupe_key=dedupe_key,
        checkout_session=session,
    )


# --- Hosting -------------------------------------------------------------------------------------
# Each is queued only on an actual transition, with a dedupe key naming it, so a duplicate or
# re-processed event never sends a second one. `portal_path` is the owner's page for the site
# (checkout.services.subscriptions.portal_site_path), where hosting is managed.

def hosting_activated_email_queue(
    *, site: Site, subscription: Subscription, reactivation: bool, occasion: str, portal_path: str,
) -> None:
    """The first activation of a subscription is one email ever; a later return from a pause or
    suspension is one email per occasion."""
    if _site_owner_email_queue(
        site=site, kind=EmailLog.Kind.HOSTING_ACTIVATED, context={"reactivated": False}, portal_path=portal_path,
        dedupe_key=f"hosting_activated:{subscription.pk}",
    ) is None and reactivation:
        _site_owner_email_queue(
            site=site, kind=EmailLog.Kind.HOSTING_ACTIVATED, context={"reactivated": True}, portal_path=portal_path,
            dedupe_key=f"hosting_reactivated:{subscription.pk}:{occasion}",
        )


def hosting_suspended_email_queue(
    *, site: Site, subscription: Subscription, reason: str, occasion: str, portal_path: str,
) -> EmailLog | None:
    """The site went offline: `reason` is paused, cancelled or ended."""
    return _site_owner_email_queue(
        site=site, kind=EmailLog.Kind.HOSTING_SUSPENDED, context={"reason": reason}, portal_path=portal_path,
        dedupe_key=f"hosting_suspended:{subscription.pk}:{occasion}",
    )


def hosting_cancelled_email_queue(*, site: Site, subscription: Subscription, portal_path: str) -> EmailLog | None:
    """"Your hosting is cancelled; the site stays live until …". Once per subscription, whether
    we learnt of the cancellation from the portal or from Recurrente's webhook."""
    until = subscription.current_period_end
    return _site_owner_email_queue(
        site=site, kind=EmailLog.Kind.HOSTING_SUSPENDED,
        context={
            "reason": "cancel_scheduled",
            "live_until": dateformat.format(timezone.localtime(until), "F j, Y") if until else "",
        },
        portal_path=portal_path,
        # One notice per cancellation: a subscription reactivated and cancelled again is told again.
        dedupe_key=f"hosting_cancelled:{subscription.pk}{_since_reactivation(subscription)}",
    )


def _since_reactivation(subscription: Subscription) -> str:
    # The portal and Recurrente's event report one cancellation at slightly different times, so
    # the notice is keyed by the reactivation that preceded it (none for the first).
    return f":after:{subscription.reactivated_at.isoformat()}" if subscription.reactivated_at else ""


def payment_problem_email_queue(
    *, site: Site, subscription: Subscription, occasion: str, portal_path: str,
) -> EmailLog | None:
    """A renewal charge failed (the subscription is past due): the site stays live meanwhile."""
    return _site_owner_email_queue(
        site=site, kind=EmailLog.Kind.PAYMENT_PROBLEM,
        context={"amount": format_money(subscription.amount, subscription.currency)}, portal_path=portal_path,
        dedupe_key=f"payment_problem:{subscription.pk}:{occasion}",
    )


def hosting_nudge_email_queue(*, site: Site, portal_path: str) -> EmailLog | None:
    """One nudge per site to an owner who bought it and never started hosting."""
    owner = cast(CustomerUser, site.owner)  # the nudge is only for owned sites
    return email_queue(
        kind=EmailLog.Kind.HOSTING_NUDGE, to_email=owner.email, user=owner,
        context={
            "customer_name": owner.full_name,
            "site_name": site.business_name,
            "monthly_price": format_usd(site.monthly_amount),
            "activate_url": absolute_url(portal_path),
            "site_url": site_page_url(site),
        },
        dedupe_key=f"hosting_nudge:{site.pk}",
    )


def _site_owner_email_queue(
    *, site: Site, kind: str, context: dict, dedupe_key: str, portal_path: str,
) -> EmailLog | None:
    owner = site.owner
    if owner is None:
        logger.warning("site %s has no owner to email (%s)", site.pk, kind)
        return None
    return email_queue(
        kind=kind, to_email=owner.email, user=owner, dedupe_key=dedupe_key,
        context={
            "customer_name": owner.full_name,
            "site_name": site.business_name,
            "site_url": site_page_url(site),
            "portal_url": absolute_url(portal_path),
            **context,
        },
    )
