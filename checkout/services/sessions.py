"""Opening a checkout session: the one way a purchase, a hosting start and a recovery link get a
Recurrente checkout.

1. With the site locked (the lock orders this with payments and other attempts for the site):
   check the site may be bought now, reuse this buyer's open checkout, or write an `initiated`
   session. It is committed before Recurrente is called, so a failure or crash keeps the lead.
2. Ask Recurrente for the checkout with no lock held. A conditional update claims the call
   (`checkout_requested_at`), so a double click waits for the first request's answer instead of
   creating a second checkout. Whatever ends a call gives the claim back (unless another request
   has since taken it); a claim older than any call can take (its request died) is taken over by
   the next request, and a request that has waited that long answers "try again" instead.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from checkout.clients import recurrente_client
from checkout.models import CheckoutSession
from checkout.recurrente import JsonObject, RecurrenteError
from sites.models import Site

logger = logging.getLogger(__name__)

# The reconciler's first look at a new checkout (its back-off schedule is in reconcile.py).
RECONCILE_FIRST_LOOK_MINUTES = 2
# An `initiated` session this young, with no error, is another request's checkout in the making.
IN_FLIGHT = timedelta(minutes=1)
WAIT_POLL_SECONDS = 0.2


class CheckoutUnavailable(Exception):
    """Recurrente could not create the checkout; the session (the lead) is kept."""

    def __init__(self, session: CheckoutSession) -> None:
        super().__init__(f"checkout unavailable for session {session.pk}")
        self.session = session


def checkout_lifetime() -> timedelta:
    return timedelta(hours=settings.CHECKOUT_LIFETIME_HOURS)


@dataclass(frozen=True)
class SessionOpening:
    """What one kind of checkout tells `checkout_session_open`."""

    # With the site locked: raise if this buyer may not start a checkout for it now.
    site_check: Callable[[Site], None]
    # This buyer's recent sessions of this kind for the site: the ones that may be reused.
    recent: Callable[[Site], QuerySet[CheckoutSession]]
    # Write the new `initiated` session (the site is locked).
    new_session: Callable[[Site], CheckoutSession]
    # The POST /checkouts body for a session.
    payload: Callable[[CheckoutSession], JsonObject]
    # Statuses in which a session's checkout is still payable and is handed out again.
    reusable_statuses: tuple[str, ...] = (CheckoutSession.Status.CHECKOUT_CREATED,)
    # Retry an `initiated` session whose creation failed, rather than start a new one (a recovery
    # link always leads to its one discounted session).
    retry_failed: bool = False


def checkout_session_open(*, site_id: uuid.UUID, opening: SessionOpening) -> CheckoutSession:
    """A session with a Recurrente checkout URL, reusing an open one. Raises what
    `opening.site_check` raises, or CheckoutUnavailable when Recurrente fails."""
    session, reused = _session_open_or_create(site_id=site_id, opening=opening)
    if reused:
        logger.info("checkout session %s reused for site %s", session.pk, site_id)
        return session
    session = checkout_create(session_id=session.pk, payload_builder=opening.payload)
    if session.closed_at:
        # The site sold while Recurrente was creating this checkout: never send the buyer to pay.
        # The checkout is stored, so the reconciler still watches it until it expires.
        opening.site_check(Site.objects.get(pk=site_id))
    return session


def _session_open_or_create(*, site_id: uuid.UUID, opening: SessionOpening) -> tuple[CheckoutSession, bool]:
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site_id)
        opening.site_check(site)
        # A checkout closed by a sale is never handed out again (site_sold.py).
        recent = opening.recent(site).filter(closed_at__isnull=True).order_by("-created_at")
        open_session = recent.filter(status__in=opening.reusable_statuses).exclude(checkout_url="").first()
        if open_session is not None:
            return open_session, True
        pending = recent.filter(status=CheckoutSession.Status.INITIATED)
        if not opening.retry_failed:
            pending = pending.filter(checkout_error="", created_at__gte=timezone.now() - IN_FLIGHT)
        session = pending.first()
        if session is None:
            session = opening.new_session(site)
            logger.info("checkout session %s (%s) initiated for site %s", session.pk, session.kind, site.pk)
    return session, False


# --- Asking Recurrente -----------------------------------------------------------------------------

def _call_deadline() -> timedelta:
    """Longer than any create-checkout call can take (connect + read timeouts, and a margin)."""
    return timedelta(seconds=sum(settings.RECURRENTE_TIMEOUT) + 5)


def _creation_claim(session_id: uuid.UUID, *, take_over_stale: bool) -> datetime | None:
    """Claim the create-checkout call for an `initiated` session: the claim's time, or None when
    another request holds it. A claim older than any call can take belongs to a request that died
    mid-call; it is taken over only when `take_over_stale` (a request that has not waited yet)."""
    now = timezone.now()
    unclaimed = Q(checkout_requested_at__isnull=True)
    if take_over_stale:
        unclaimed |= Q(checkout_requested_at__lt=now - _call_deadline())
    claimed = (
        CheckoutSession.objects.filter(unclaimed, pk=session_id, status=CheckoutSession.Status.INITIATED)
        .update(checkout_requested_at=now, updated_at=now)
    )
    return now if claimed else None


def _creation_release(*, session_id: uuid.UUID, claimed_at: datetime, error: str = "") -> bool:
    """Give the claim back (recording why the call failed), unless it is no longer ours: a request
    that took it over, or stored a checkout meanwhile, is not undone. True if released."""
    changes: dict[str, object] = {"checkout_requested_at": None, "updated_at": timezone.now()}
    if error:
        changes["checkout_error"] = error[:2000]
    return bool(
        CheckoutSession.objects.filter(
            pk=session_id, status=CheckoutSession.Status.INITIATED, checkout_requested_at=claimed_at
        ).update(**changes)
    )


def _checkout_url_trusted(url: str) -> bool:
    origin = settings.SITE_URL if settings.RECURRENTE_SANDBOX else settings.RECURRENTE_CHECKOUT_ORIGIN
    return url.startswith(origin.rstrip("/") + "/")


def checkout_create(*, session_id: uuid.UUID, payload_builder: Callable[[CheckoutSession], JsonObject]) -> CheckoutSession:
    """Create the Recurrente checkout for an `initiated` session and store its id and URL.

    Creating a checkout is not idempotent at Recurrente, so it is never retried automatically;
    while another request is creating this session's checkout, this one waits for its answer.
    """
    claimed_at, session = _claim_or_wait(session_id)
    if claimed_at is None:
        return session
    try:
        result = recurrente_client().create_checkout(payload_builder(session))
        if not _checkout_url_trusted(result["checkout_url"]):
            # We redirect buyers to this URL: only ever to Recurrente (or our own sandbox).
            raise RecurrenteError("Recurrente returned a checkout URL outside its own site")
    except RecurrenteError as exc:
        logger.warning("checkout session %s: Recurrente checkout failed (%s)", session.pk, type(exc).__name__)
        if not _creation_release(session_id=session.pk, claimed_at=claimed_at, error=f"{type(exc).__name__}: {exc}"):
            # Our call outlived its deadline and another request has the session now.
            session = CheckoutSession.objects.select_related("site").get(pk=session.pk)
            if session.status != CheckoutSession.Status.INITIATED:
                return session
        raise CheckoutUnavailable(session) from exc
    except BaseException:
        # A bug, a database error, a worker being stopped: the next click must not wait for a
        # claim nobody will answer.
        _creation_release(session_id=session.pk, claimed_at=claimed_at)
        raise
    return _checkout_record(session=session, checkout_id=result["id"], checkout_url=result["checkout_url"])


def _claim_or_wait(session_id: uuid.UUID) -> tuple[datetime | None, CheckoutSession]:
    """(claim time, session) when this request is to ask Recurrente; (None, session) when the
    session already has its checkout, which another request created while this one waited.
    Waits at most as long as one call may take, then answers "try again" (CheckoutUnavailable)
    rather than call Recurrente itself past the web server's time budget."""
    give_up_at = time.monotonic() + _call_deadline().total_seconds()
    first_look = True
    while True:
        session = CheckoutSession.objects.select_related("site").get(pk=session_id)
        if session.status != CheckoutSession.Status.INITIATED:
            return None, session
        claimed_at = _creation_claim(session_id, take_over_stale=first_look)
        if claimed_at is not None:
            return claimed_at, session
        if time.monotonic() >= give_up_at:
            logger.warning("checkout session %s: another request is still creating its checkout; gave up waiting", session.pk)
            raise CheckoutUnavailable(session)
        first_look = False
        time.sleep(WAIT_POLL_SECONDS)


def _checkout_record(*, session: CheckoutSession, checkout_id: str, checkout_url: str) -> CheckoutSession:
    now = timezone.now()
    recorded = CheckoutSession.objects.filter(pk=session.pk, status=CheckoutSession.Status.INITIATED).update(
        recurrente_checkout_id=checkout_id, checkout_url=checkout_url, checkout_created_at=now,
        # From now on the reconciler asks Recurrente about it until it is paid or expires.
        next_reconcile_at=now + timedelta(minutes=RECONCILE_FIRST_LOOK_MINUTES),
        checkout_error="", checkout_requested_at=None, status=CheckoutSession.Status.CHECKOUT_CREATED, updated_at=now,
    )
    if recorded:
        logger.info("checkout session %s: Recurrente checkout %s created", session.pk, checkout_id)
    else:
        # Only after a call that outlived its deadline: another request's checkout was stored
        # first. Ours is never shown to anyone and expires unpaid at Recurrente.
        logger.warning("checkout session %s: checkout %s created too late; the session already has one", session.pk, checkout_id)
    return CheckoutSession.objects.select_related("site").get(pk=session.pk)
