"""Money Recurrente confirmed (or declined, or refunded), applied to our records.

Every function takes domain values (already read out of a webhook by webhooks/handlers.py), finds
our rows by Recurrente's ids (`ch_…`, `pa_…`, `su_…`), never by payload metadata, and is
idempotent: the legacy and unified events for one card payment, Svix retries and concurrent
workers all end in one `Payment` row.
"""

import logging
from datetime import datetime
from typing import cast

from django.db import transaction
from django.utils import timezone

from checkout import emails
from checkout.ledger import Outcome, PaymentConfirmation, checkout_session_complete, payment_row_create
from checkout.models import CheckoutSession, Payment
from customers import emails as customer_emails
from customers.models import CustomerUser, normalize_email_address
from customers.services import customer_get_or_create_for_purchase
from sites.models import Site
from sites.services import site_sell
from webmagic.emails import email_alert_staff
from webmagic.money import format_money, format_usd, from_cents, to_cents

from . import site_sold

logger = logging.getLogger(__name__)


def purchase_payment_record(*, session: CheckoutSession, confirmation: PaymentConfirmation) -> Outcome:
    """DESIGN §4: in one transaction, with the site locked, record the payment and hand the site
    to the buyer; flag (never fulfil) a wrong amount or a site that is no longer for sale."""
    with transaction.atomic():
        # The site lock serialises every payment for this site: the legacy/unified pair, Svix
        # retries and two buyers racing for one site are applied one after the other.
        site = Site.objects.select_for_update().get(pk=session.site_id)
        session = CheckoutSession.objects.select_for_update().get(pk=session.pk)
        if Payment.objects.filter(recurrente_payment_id=confirmation.payment_id).exists():
            return Outcome.DUPLICATE

        paid = from_cents(confirmation.amount_cents)
        expected_cents = to_cents(session.amount)
        if confirmation.amount_cents != expected_cents or confirmation.currency.upper() != session.currency.upper():
            note = (
                f"paid {confirmation.amount_cents} {confirmation.currency}, "
                f"expected {expected_cents} {session.currency} for session {session.pk}"
            )
            payment = payment_row_create(
                confirmation=confirmation, kind=Payment.Kind.PURCHASE, site=site, session=session,
                flag=Payment.Flag.AMOUNT_MISMATCH, flag_note=note,
            )
            if payment is None:
                return Outcome.DUPLICATE
            logger.error("payment %s: amount mismatch (%s); site %s not fulfilled", payment.recurrente_payment_id, note, site.pk)
            email_alert_staff(
                subject=f"Payment {payment.recurrente_payment_id} has the wrong amount — not fulfilled",
                body=(
                    f"Recurrente confirmed payment {payment.recurrente_payment_id} for checkout {confirmation.checkout_id}, "
                    f"but the amount does not match what we asked: {note}.\n"
                    f"Site: {site.slug} (unchanged, status {site.status}). Buyer: {session.customer_email}.\n"
                    "Check it in Recurrente, then refund it or fulfil the purchase by hand."
                ),
                dedupe_key=f"amount-mismatch:{payment.recurrente_payment_id}",
            )
            return Outcome.AMOUNT_MISMATCH

        if site.status != Site.Status.PREVIEW:
            return _purchase_conflict_record(site=site, session=session, confirmation=confirmation)

        # Recurrente's customer (us_…) pre-fills later checkouts, so it is kept only when the payer
        # used the email our buyer typed: someone else paying must not attach their identity.
        same_person = normalize_email_address(confirmation.customer_email) == normalize_email_address(session.customer_email)
        user, _created = customer_get_or_create_for_purchase(
            email=session.customer_email or confirmation.customer_email,
            full_name=session.customer_name or confirmation.customer_name,
            recurrente_customer_id=confirmation.customer_id if same_person else "",
        )
        payment = payment_row_create(confirmation=confirmation, kind=Payment.Kind.PURCHASE, site=site, session=session, user=user)
        if payment is None:
            return Outcome.DUPLICATE
        site_sell(site=site, owner=user, paid_at=payment.paid_at, payment_reference=payment.recurrente_payment_id, amount=paid)
        checkout_session_complete(session=session, user=user, owner=True)
        # Nobody else may go on to pay for it: their open checkouts close while the site is locked.
        site_sold.checkouts_close_for_sold_site(site=site, sold_session=session)
        logger.info(
            "payment %s fulfilled session %s: site %s now owned by customer %s",
            payment.recurrente_payment_id, session.pk, site.pk, user.pk,
        )
        _purchase_emails_queue(site=site, session=session, payment=payment, user=user)
    return Outcome.FULFILLED


def _purchase_conflict_record(*, site: Site, session: CheckoutSession, confirmation: PaymentConfirmation) -> Outcome:
    """Money was taken for a site that is no longer for sale: never a second owner. The payment
    is flagged for refund and the session completes (the buyer did pay). Another buyer's payment
    is refunded automatically (site_sold.py); a buyer who paid twice for their own site is left
    to staff, who are told."""
    same_buyer = bool(site.owner_id) and cast(CustomerUser, site.owner).email.lower() == (session.customer_email or "").lower()
    reason = "buyer already owns this site (paid twice)" if same_buyer else "site already sold to another customer"
    payment = payment_row_create(
        confirmation=confirmation, kind=Payment.Kind.PURCHASE, site=site, session=session,
        flag=Payment.Flag.NEEDS_REFUND, flag_note=f"{reason}; site status {site.status}",
    )
    if payment is None:
        return Outcome.DUPLICATE
    checkout_session_complete(session=session)
    logger.error("payment %s for site %s needs a refund: %s (session %s)", payment.recurrente_payment_id, site.pk, reason, session.pk)
    if not same_buyer:
        # Another buyer paid a moment too late: refunded automatically, and they are told (the
        # staff alert says how the automatic refund went).
        site_sold.site_sold_refund_arrange(site=site, session=session, payment=payment)
        return Outcome.NEEDS_REFUND
    email_alert_staff(
        subject=f"Refund needed: payment {payment.recurrente_payment_id} for {site.slug}",
        body=(
            f"Recurrente confirmed payment {payment.recurrente_payment_id} ({format_money(payment.amount, payment.currency)}) "
            f"for checkout {confirmation.checkout_id}, but {reason}.\n"
            f"Site: {site.slug} (status {site.status}, unchanged). Buyer: {session.customer_name} <{session.customer_email}>.\n"
            "Refund it from the payment's page in admin and let the buyer know."
        ),
        dedupe_key=f"needs-refund:{payment.recurrente_payment_id}",
    )
    return Outcome.NEEDS_REFUND


def _purchase_emails_queue(*, site: Site, session: CheckoutSession, payment: Payment, user: CustomerUser) -> None:
    """Queued inside the fulfilment transaction, sent after it commits (webmagic.emails)."""
    if not user.has_usable_password():
        # A new account, or one that never chose a password: it needs the set-password link.
        # Once per account; a later purchase gets its receipt, and password reset covers the rest.
        customer_emails.welcome_email_queue(
            user=user, site_name=site.business_name, site_url=emails.site_page_url(site),
            hosting_price=format_usd(site.monthly_amount),
            dedupe_key=f"welcome:user:{user.pk}", checkout_session=session,
        )
    emails.receipt_email_queue(site=site, session=session, payment=payment, user=user)


# --- Declines and bank transfers ---------------------------------------------------------------

def checkout_payment_failure_record(
    *, checkout_id: str, reason: str, failed_at: datetime | None = None, bank_transfer: bool = False
) -> Outcome:
    """A declined card does not end the attempt (the buyer can retry on the same page): record
    the reason, leave the status alone."""
    with transaction.atomic():
        session = CheckoutSession.objects.select_for_update().filter(recurrente_checkout_id=checkout_id).first()
        if session is None:
            logger.info("payment failure for unknown checkout %s; ignored", checkout_id)
            return Outcome.UNKNOWN_CHECKOUT
        if failed_at and session.last_failure_at and failed_at < session.last_failure_at:
            return Outcome.STALE
        session.last_failure_reason = (reason or "The payment was declined.")[:500]
        session.last_failure_at = failed_at or timezone.now()
        fields = ["last_failure_reason", "last_failure_at", "updated_at"]
        if bank_transfer and session.payment_in_progress_at:
            # The transfer we were waiting for failed: the success page must stop saying "in progress".
            session.payment_in_progress_at = None
            fields.append("payment_in_progress_at")
        session.save(update_fields=fields)
    logger.info("checkout %s (session %s): payment failure recorded", checkout_id, session.pk)
    return Outcome.RECORDED


def checkout_payment_in_progress_record(*, checkout_id: str, started_at: datetime | None = None) -> Outcome:
    """A bank transfer was started; it can take a day. The session and success page say so."""
    with transaction.atomic():
        session = CheckoutSession.objects.select_for_update().filter(recurrente_checkout_id=checkout_id).first()
        if session is None:
            logger.info("bank transfer pending for unknown checkout %s; ignored", checkout_id)
            return Outcome.UNKNOWN_CHECKOUT
        if session.status == CheckoutSession.Status.COMPLETED or session.payment_in_progress_at:
            return Outcome.DUPLICATE
        session.payment_in_progress_at = started_at or timezone.now()
        session.save(update_fields=["payment_in_progress_at", "updated_at"])
    logger.info("checkout %s (session %s): bank transfer in progress", checkout_id, session.pk)
    return Outcome.RECORDED
