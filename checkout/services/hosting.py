"""Hosting from the portal (DESIGN §6): start the $95/month subscription checkout, cancel it,
and nudge owners who bought a site but never put it live.

What happens after the buyer pays (subscription.create, the first payment, renewals, pauses,
cancellations) is the webhooks' business: checkout/services/subscriptions.py.

"Open" subscription, for starting hosting: one that is pending, active or past_due and not a
cancelled-in-the-portal one whose paid period is over. A paused subscription does not block a new
start: its site is suspended and the owner needs a way back online (DESIGN: "a suspended or owned
site goes active again when a new subscription starts"). The guard is made with the site row
locked; see subscriptions.py for why it is not a database constraint.
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import cast

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from checkout import emails
from checkout.clients import RecurrenteApi, recurrente_client
from checkout.models import CheckoutSession, Payment, Subscription
from checkout.recurrente import (
    JsonObject,
    RecurrenteError,
    RecurrenteNotFound,
    RecurrenteNotSent,
    RecurrenteRedirect,
    RecurrenteUnavailable,
    recurrente_time,
)
from customers.models import CustomerUser
from sites.models import Site
from webmagic.emails import email_alert_staff
from webmagic.models import EmailSuppression
from webmagic.money import to_cents

from .purchase import checkout_payload
from .sessions import SessionOpening, checkout_lifetime, checkout_session_open
from .subscriptions import API_STATUSES, portal_site_path, subscription_period_end_apply

logger = logging.getLogger(__name__)

OPEN_STATUSES = (Subscription.Status.PENDING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)
CANCELLABLE_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE, Subscription.Status.PAUSED)
NUDGE_AFTER = timedelta(hours=24)

# Cancel errors after which Recurrente may have cancelled all the same (a read timeout, a
# connection dropped after sending, a 5xx, a redirect), and the 404 a second DELETE of a
# subscription it already cancelled might get: the subscription is read back before answering.
# RecurrenteNotSent, a subclass of RecurrenteUnavailable, is sorted out before this is asked.
UNCLEAR_ERRORS = (RecurrenteUnavailable, RecurrenteRedirect, RecurrenteNotFound)
# (connect, read) seconds for that read: the owner has already waited on the DELETE (up to the
# client's 3 + 10 s), and the page must answer well inside the web server's 30 s.
CONFIRM_TIMEOUT = (2, 4)
# For staff, wherever a cancellation we could not confirm is reported.
UNCONFIRMED_HOW_TO = (
    "Look the subscription up in Recurrente's dashboard. If it is cancelled there, nothing needs doing in a hurry: "
    "the owner's retry records it, or the reconciler does (it reads this subscription again on its next pass and "
    "every live subscription at least daily, and applies Recurrente's state once that reads cancelled, which may be "
    "only when the paid period ends). Subscriptions → \"Cancel through Recurrente\" goes through the same checks, so "
    "it records the cancellation only once Recurrente confirms it. If it is still billing and the owner has not "
    "managed to cancel, cancel it that way or contact them."
)


class HostingRefused(Exception):
    """Hosting cannot be started or cancelled for this site now. The message is for the owner."""


class HostingNotOwner(HostingRefused):
    """The user does not own the site (views answer 404 before getting here)."""


class HostingCancelFailed(Exception):
    """Recurrente certainly did not cancel the subscription (the request never reached it, or it
    refused it); nothing was changed, here or there. Trying again later may work."""


class HostingCancelUnconfirmed(Exception):
    """Recurrente gave no clear answer and reading the subscription back did not show it
    cancelled: it may or may not be. Nothing was recorded here; staff were alerted."""


# --- Reads shared by the views -------------------------------------------------------------

def subscription_open_for_site(*, site_id: uuid.UUID, now: datetime | None = None) -> Subscription | None:
    now = now or timezone.now()
    ended = Q(cancel_requested_at__isnull=False, current_period_end__lte=now)
    return (
        Subscription.objects.filter(site_id=site_id, status__in=OPEN_STATUSES).exclude(ended)
        .order_by("-created_at").first()
    )


def subscription_cancellable_for_site(*, site_id: uuid.UUID) -> Subscription | None:
    """The subscription "Cancel hosting" would cancel: the newest one still billing."""
    return (
        Subscription.objects.filter(site_id=site_id, status__in=CANCELLABLE_STATUSES, cancel_requested_at__isnull=True)
        .order_by("-created_at").first()
    )


# --- Start -----------------------------------------------------------------------------------

def hosting_checkout_start(*, site_id: uuid.UUID, user: CustomerUser) -> CheckoutSession:
    """A CheckoutSession with a Recurrente checkout URL for this site's hosting, reusing an open
    one. Raises HostingNotOwner, HostingRefused, or CheckoutUnavailable when Recurrente fails."""

    def site_check(site: Site) -> None:
        # Under the site lock, which also orders the webhooks that activate hosting, so the
        # "no open subscription" check cannot race them.
        if site.owner_id is None or site.owner_id != user.pk:
            raise HostingNotOwner(f"user {user.pk} does not own site {site.pk}")
        if site.status == Site.Status.ACTIVE:
            raise HostingRefused("Hosting is already active: your site is live.")
        if site.status not in (Site.Status.OWNED, Site.Status.SUSPENDED):
            raise HostingRefused("Hosting can only be started for a site you own.")
        open_subscription = subscription_open_for_site(site_id=site.pk)
        if open_subscription is not None:
            logger.info("site %s already has open subscription %s", site.pk, open_subscription.recurrente_subscription_id)
            raise HostingRefused("This site already has a hosting subscription; it will be live as soon as it is confirmed.")

    def recent(site: Site) -> QuerySet[CheckoutSession]:
        return CheckoutSession.objects.filter(
            site_id=site.pk, kind=CheckoutSession.Kind.SUBSCRIPTION, created_at__gte=timezone.now() - checkout_lifetime(),
        )

    def new_session(site: Site) -> CheckoutSession:
        return CheckoutSession.objects.create(
            site=site, kind=CheckoutSession.Kind.SUBSCRIPTION, status=CheckoutSession.Status.INITIATED,
            customer_name=(user.full_name or user.email)[:200], customer_email=user.email, user=user,
            amount=site.monthly_amount, currency=site.currency,
        )

    return checkout_session_open(site_id=site_id, opening=SessionOpening(
        site_check=site_check, recent=recent, new_session=new_session, payload=hosting_checkout_payload,
    ))


def hosting_checkout_payload(session: CheckoutSession) -> JsonObject:
    """POST /checkouts for hosting: one recurring item only (never mixed with a one-time item:
    Recurrente fails such checkouts at payment time)."""
    site = session.site
    item = {
        "name": f"Website hosting — {site.business_name}"[:200],
        "amount_in_cents": to_cents(session.amount),
        "currency": session.currency,
        "quantity": 1,
        "charge_type": "recurring",
        "billing_interval": "month",
        "billing_interval_count": 1,
        "payment_method_types": ["card"],
    }
    portal = settings.SITE_URL + portal_site_path(site.slug)
    # Back through our "returned" view, which asks Recurrente about this checkout right away (test
    # keys may send no webhook) before showing the portal's "confirming" notice.
    returned = settings.SITE_URL + reverse("hosting:returned", kwargs={"slug": site.slug})
    extra = {}
    customer_id = cast(CustomerUser, session.user).recurrente_customer_id if session.user_id else ""
    if customer_id:
        extra["user_id"] = customer_id  # pre-fills the buyer on Recurrente's page
    return checkout_payload(
        session=session, item=item, success_url=returned, cancel_url=portal, extra=extra,
    )


# --- Cancel ----------------------------------------------------------------------------------

def hosting_cancel(*, site_id: uuid.UUID, user: CustomerUser) -> Subscription:
    """Cancel the site's subscription at Recurrente; the site stays live until the paid period
    ends (subscription_periods_end suspends it then). Raises HostingNotOwner, HostingRefused,
    HostingCancelFailed (Recurrente certainly did not cancel: nothing changed) or
    HostingCancelUnconfirmed (it may have: nothing recorded, staff alerted)."""
    site = Site.objects.get(pk=site_id)
    if site.owner_id is None or site.owner_id != user.pk:
        raise HostingNotOwner(f"user {user.pk} does not own site {site.pk}")
    subscription = subscription_cancellable_for_site(site_id=site.pk)
    if subscription is None:
        already = Subscription.objects.filter(site_id=site.pk, cancel_requested_at__isnull=False).order_by("-cancel_requested_at").first()
        if already is not None:
            return already  # a repeated confirmation (double click, back button): already done
        raise HostingRefused("There is no active hosting subscription to cancel.")
    su_id = subscription.recurrente_subscription_id
    client = recurrente_client()
    # Outside any transaction: no row is locked while we wait on Recurrente.
    try:
        client.cancel_subscription(su_id)
    except RecurrenteError as exc:
        subscription.refresh_from_db()
        if subscription.cancel_requested_at is not None:
            return subscription  # a concurrent request cancelled it first; this call's error is moot
        details = _cancel_failure_resolve(client=client, subscription=subscription, site=site, error=exc)
        period_end = recurrente_time(details.get("current_period_end"))
    else:
        period_end = _period_end_read(client=client, su_id=su_id)
    return _cancellation_record(site_id=site.pk, subscription_id=subscription.pk, user=user, period_end=period_end)


def _period_end_read(*, client: RecurrenteApi, su_id: str) -> datetime | None:
    try:
        return recurrente_time(client.get_subscription(su_id).get("current_period_end"))
    except RecurrenteError as exc:
        logger.info("subscription %s: period not readable after cancel (%s); using ours", su_id, type(exc).__name__)
        return None


def _cancel_failure_resolve(*, client: RecurrenteApi, subscription: Subscription, site: Site, error: RecurrenteError) -> JsonObject:
    """The DELETE failed. Returns Recurrente's subscription when reading it back shows it cancelled
    (an unclear answer that did cancel, or a second DELETE of a subscription already cancelled),
    to be recorded like a successful DELETE. Otherwise raises HostingCancelFailed when the DELETE
    certainly changed nothing, or HostingCancelUnconfirmed when it may have cancelled."""
    su_id = subscription.recurrente_subscription_id
    if isinstance(error, RecurrenteNotSent) or error.status in (401, 429):
        # Never sent, or turned away unread (our key is wrong, we asked too fast): no need to ask.
        logger.warning("subscription %s (site %s): cancel not done at Recurrente (%s)", su_id, site.pk, _error_text(error))
        raise HostingCancelFailed(str(error)) from error
    details, read_back = _subscription_read_back(client=client, su_id=su_id)
    if details is not None and _subscription_shows_cancellation(details, su_id=su_id):
        logger.warning(
            "subscription %s (site %s): cancel answered %s, but Recurrente shows it cancelled; recorded as cancelled",
            su_id, site.pk, _error_text(error),
        )
        return details
    if Subscription.objects.filter(pk=subscription.pk, cancel_requested_at__isnull=False).exists():
        return {}  # a concurrent request got Recurrente's OK while we asked: it recorded the cancellation
    if not isinstance(error, UNCLEAR_ERRORS):
        # A 422 or another 4xx: Recurrente read the request and refused it, so this request changed
        # nothing. (If it refused because an earlier unclear attempt had cancelled it, reading it
        # back above would normally have shown that.)
        logger.warning("subscription %s (site %s): Recurrente refused the cancel (%s)", su_id, site.pk, _error_text(error))
        raise HostingCancelFailed(str(error)) from error
    raise _cancel_unconfirmed(subscription=subscription, site=site, error=error, read_back=read_back) from error


def _subscription_read_back(*, client: RecurrenteApi, su_id: str) -> tuple[JsonObject | None, str]:
    """Recurrente's subscription, read once with a short timeout (the owner already waited on the
    DELETE), and a few words for staff on what the read found."""
    try:
        details = client.get_subscription(su_id, timeout=CONFIRM_TIMEOUT)
    except RecurrenteError as exc:
        logger.warning("subscription %s: could not read it back after an unclear cancel (%s)", su_id, type(exc).__name__)
        return None, f"reading it back right after failed too ({_error_text(exc)})"
    status = str(details.get("status") or "no status")[:40]
    return details, f"reading it back right after showed it {status}, with no cancellation"


def _subscription_shows_cancellation(details: JsonObject, *, su_id: str) -> bool:
    """Does Recurrente's answer about this subscription show it cancelled? Its status
    `cancelled`, or a `cancel_at_period_end` flag (unverified shape; harmless if never sent). A
    plain `active` does not: Recurrente may show a cancelled subscription as active until its
    period ends, and a wrong "cancelled" would tell the owner they won't be charged when they will."""
    if details.get("id") not in (None, su_id):
        return False
    return API_STATUSES.get(str(details.get("status", ""))) == Subscription.Status.CANCELLED or details.get("cancel_at_period_end") is True


def _cancel_unconfirmed(*, subscription: Subscription, site: Site, error: RecurrenteError, read_back: str) -> HostingCancelUnconfirmed:
    """Nothing is recorded: staff are told which subscription to look up, and the error to raise
    is returned. The owner is asked to try again, which is safe (see UNCONFIRMED_HOW_TO)."""
    su_id = subscription.recurrente_subscription_id
    now = timezone.now()
    owner = cast(CustomerUser, site.owner).email if site.owner_id else "no owner"
    # Due on the reconciler's next pass (it reads the never-read first) rather than up to a day later.
    Subscription.objects.filter(pk=subscription.pk).update(last_reconciled_at=None)
    email_alert_staff(
        subject=f"Hosting cancellation of {su_id} ({site.slug}) not confirmed",
        body=(f"Cancelling hosting subscription {su_id} (site {site.slug}, owner {owner}) was asked for at "
              f"{now:%Y-%m-%d %H:%M} UTC. Recurrente gave no clear answer ({_error_text(error)}) and {read_back}, so "
              "it may or may not be cancelled. Nothing was recorded here; the owner was told we could not confirm it and "
              f"asked to try again in a few minutes.\n{UNCONFIRMED_HOW_TO}"),
        # One alert a day per subscription, however often the owner retries meanwhile.
        dedupe_key=f"hosting-cancel-unconfirmed:{su_id}:{now:%Y-%m-%d}",
    )
    logger.error("subscription %s (site %s): cancel got no clear answer (%s) and %s; outcome unknown, staff alerted",
                 su_id, site.pk, type(error).__name__, read_back)
    return HostingCancelUnconfirmed(
        f"Recurrente gave no clear answer to cancelling {su_id} ({_error_text(error)}) and {read_back}: it may or may "
        f"not be cancelled. Nothing was recorded. {UNCONFIRMED_HOW_TO}"
    )


def _error_text(error: RecurrenteError) -> str:
    return f"{error}" + (f" (HTTP {error.status})" if error.status else "")


def _cancellation_record(
    *, site_id: uuid.UUID, subscription_id: int, user: CustomerUser, period_end: datetime | None,
) -> Subscription:
    """Recurrente cancelled the subscription: the portal's record of it (once, whatever races)."""
    now = timezone.now()
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site_id)
        subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
        if subscription.cancel_requested_at is None:
            subscription.cancel_requested_at = now
            if period_end and (subscription.current_period_end is None or period_end > subscription.current_period_end):
                subscription.current_period_end = period_end
            if subscription.current_period_end is None:
                subscription.current_period_end = _period_end_estimate(subscription=subscription, now=now)
            subscription.save(update_fields=["cancel_requested_at", "current_period_end", "updated_at"])
            logger.info(
                "subscription %s cancelled from the portal by customer %s; site %s live until %s",
                subscription.recurrente_subscription_id, user.pk, site.pk, subscription.current_period_end.isoformat(),
            )
            if site.status == Site.Status.ACTIVE and subscription.current_period_end > now:
                emails.hosting_cancelled_email_queue(site=site, subscription=subscription, portal_path=portal_site_path(site.slug))
            # A period already over (or unknown and unpaid) ends now rather than at the next tick.
            subscription_period_end_apply(subscription=subscription, site=site, now=now)
    return subscription


def _period_end_estimate(*, subscription: Subscription, now: datetime) -> datetime:
    """No period from Recurrente: one month after the last hosting payment, else now."""
    last_paid = subscription.payments.filter(status=Payment.Status.SUCCEEDED).order_by("-paid_at").values_list("paid_at", flat=True).first()
    if last_paid is None:
        return now
    return max(now, last_paid + relativedelta(months=1))


# --- Nudge -----------------------------------------------------------------------------------

def hosting_nudges_send(*, now: datetime | None = None, limit: int = 200) -> int:
    """Owners who paid for a site 24 hours ago and never started hosting get one email. Each site
    is claimed with a conditional UPDATE (hosting_nudge_sent_at from NULL) in the transaction
    that queues its email, so two overlapping runs nudge it once; the email's dedupe key says the
    same in the database. Returns how many emails were queued."""
    now = now or timezone.now()
    due = list(
        Site.objects.filter(
            status=Site.Status.OWNED, hosting_nudge_sent_at__isnull=True, purchased_at__lte=now - NUDGE_AFTER,
            owner__isnull=False,
        ).filter(subscriptions__isnull=True).order_by("purchased_at").values_list("pk", flat=True)[:limit]
    )
    sent = 0
    for site_id in due:
        with transaction.atomic():
            claimed = Site.objects.filter(
                pk=site_id, status=Site.Status.OWNED, hosting_nudge_sent_at__isnull=True,
            ).update(hosting_nudge_sent_at=now, updated_at=now)
            if not claimed:
                continue  # another run took it, or the site moved on
            site = Site.objects.select_related("owner").get(pk=site_id)
            if Subscription.objects.filter(site_id=site_id).exists():
                continue  # hosting started since the scan: claimed, nothing to say
            # cast: only owned sites are due (owner__isnull=False above).
            if EmailSuppression.objects.filter(email=cast(CustomerUser, site.owner).email.lower()).exists():
                logger.info("site %s: owner unsubscribed from reminders; no hosting nudge", site_id)
                continue
            log = emails.hosting_nudge_email_queue(site=site, portal_path=portal_site_path(site.slug))
            if log is not None:
                sent += 1
                logger.info("site %s: hosting nudge queued as email %s", site_id, log.pk)
    return sent
