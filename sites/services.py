import io
import logging
import secrets
import zipfile
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from customers.models import CustomerUser

from . import emails
from .models import DomainVerificationRecord, EditRequest, Site, SiteVersion

logger = logging.getLogger(__name__)


@transaction.atomic
def site_version_publish(*, site: Site, html: str, note: str = "") -> SiteVersion:
    """Store new generated HTML as the site's next version and make it the current one."""
    Site.objects.select_for_update().get(pk=site.pk)  # serialise publishers of one site
    number = (site.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    site.versions.filter(is_current=True).update(is_current=False)
    version = SiteVersion.objects.create(site=site, number=number, html=html, note=note, is_current=True)
    logger.info("site %s: published version %s", site.pk, number)
    return version


@transaction.atomic
def site_version_make_current(*, version: SiteVersion) -> SiteVersion:
    """Roll back (or forward) to an existing version."""
    Site.objects.select_for_update().get(pk=version.site_id)
    SiteVersion.objects.filter(site_id=version.site_id, is_current=True).exclude(pk=version.pk).update(is_current=False)
    SiteVersion.objects.filter(pk=version.pk).update(is_current=True)
    version.is_current = True
    logger.info("site %s: version %s made current", version.site_id, version.number)
    return version


# --- The site's lifecycle ----------------------------------------------------------------------
# preview → owned (sold) → active (hosting pays) ⇄ suspended. Only this module writes
# Site.status; checkout decides *when* (a payment, a subscription event) and calls these with the
# site row already locked in its own transaction.

class SiteTransitionRefused(Exception):
    """A caller asked for a lifecycle step the site's current status does not allow: a bug in the
    caller's checks, never something a customer did."""


_S = Site.Status
# step -> (statuses it may start from, status it ends in)
SITE_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "sell": (frozenset({_S.PREVIEW}), _S.OWNED),
    "activate": (frozenset({_S.OWNED, _S.SUSPENDED}), _S.ACTIVE),
    "suspend": (frozenset({_S.ACTIVE}), _S.SUSPENDED),
}


def _site_step(*, site: Site, step: str, fields: dict) -> Site:
    allowed_from, to = SITE_TRANSITIONS[step]
    if site.status not in allowed_from:
        raise SiteTransitionRefused(f"site {site.pk}: cannot {step} from {site.status}")
    site.status = to
    for name, value in fields.items():
        setattr(site, name, value)
    site.save(update_fields=["status", *fields, "updated_at"])
    return site


def site_sell(*, site: Site, owner, paid_at, payment_reference: str, amount) -> Site:
    """The site's purchase was paid: it belongs to `owner` from now on."""
    return _site_step(site=site, step="sell", fields={
        "owner": owner, "purchased_at": paid_at, "purchase_transaction_id": payment_reference, "purchase_amount": amount,
    })


def site_activate(*, site: Site) -> Site:
    """Hosting is paid: the site goes live at its address."""
    return _site_step(site=site, step="activate", fields={"activated_at": timezone.now(), "suspended_at": None})


def site_suspend(*, site: Site) -> Site:
    """Hosting stopped paying: the site goes offline (it stays the owner's)."""
    return _site_step(site=site, step="suspend", fields={"suspended_at": timezone.now()})


# Apps above this one (checkout) say why a site may not change hands now, as a reason for staff
# or None; registered in their AppConfig.ready(), so sites never imports them.
TransferCheck = Callable[[Site], str | None]
_transfer_checks: list[TransferCheck] = []


def site_transfer_check_register(check: TransferCheck) -> None:
    if check not in _transfer_checks:
        _transfer_checks.append(check)


class TransferRefused(Exception):
    """The site cannot change hands now; the message is for staff."""


TRANSFERABLE_STATUSES = (Site.Status.OWNED, Site.Status.ACTIVE, Site.Status.SUSPENDED)


def site_ownership_transfer(*, site_id, new_owner_id, staff_user) -> Site:
    """Give a bought site to another customer account (a typo in the buyer's email, a business
    sold to someone else, a refund followed by a sale).

    Apps above may refuse it through `site_transfer_check_register`: checkout refuses while a
    hosting subscription still bills the current owner's card (see
    checkout.services.subscriptions.subscription_transfer_objection). Payments stay with whoever
    paid them.
    """
    with transaction.atomic():
        # The site lock orders this with payments and subscription webhooks for the site.
        site = Site.objects.select_for_update(of=("self",)).select_related("owner").get(pk=site_id)
        if site.status not in TRANSFERABLE_STATUSES:
            raise TransferRefused(f"{site.slug} is {site.get_status_display().lower()}: only a bought site can be transferred.")
        new_owner = CustomerUser.objects.filter(pk=new_owner_id, is_active=True).first()
        if new_owner is None:
            raise TransferRefused("The new owner must be an active customer account.")
        if new_owner.pk == site.owner_id:
            raise TransferRefused(f"{site.slug} already belongs to {new_owner.email}.")
        for check in _transfer_checks:
            reason = check(site)
            if reason:
                raise TransferRefused(reason)
        previous_id = site.owner_id
        site.owner = new_owner
        site.save(update_fields=["owner", "updated_at"])
    logger.info("site %s: ownership transferred from customer %s to customer %s by staff %s",
                site.pk, previous_id, new_owner.pk, getattr(staff_user, "pk", None))
    return site


# --- Edit requests (DESIGN §9) -----------------------------------------------------------------

class EditRequestRefused(Exception):
    """The owner may not ask for an edit now; the message says why, in the owner's words."""


class EditRequestTransitionRefused(Exception):
    """Staff asked for a status change the workflow does not allow; the message says why."""


EDIT_REQUEST_MAX_LENGTH = 2000
# Enough for any real backlog; stops one account from filling the staff queue.
OPEN_EDIT_REQUESTS_PER_SITE = 10

_ER = EditRequest.Status
# pending → in_progress → done | rejected. A request can be turned down before work starts; done
# and rejected are final (the owner was told, and a new request is one form away).
EDIT_REQUEST_TRANSITIONS: dict[str, frozenset[str]] = {
    _ER.PENDING: frozenset({_ER.IN_PROGRESS, _ER.REJECTED}),
    _ER.IN_PROGRESS: frozenset({_ER.DONE, _ER.REJECTED}),
    _ER.DONE: frozenset(),
    _ER.REJECTED: frozenset(),
}
EDIT_REQUEST_RESOLVED = (_ER.DONE, _ER.REJECTED)

@transaction.atomic
def edit_request_create(*, site_id, user, description: str) -> EditRequest:
    """An owner asks for a change to their live site. Raises EditRequestRefused."""
    # The site row is locked so two quick submissions cannot both slip under the open-request cap.
    site = Site.objects.select_for_update().filter(pk=site_id, owner=user).first()
    if site is None:
        raise EditRequestRefused("No such site.")
    if site.status != Site.Status.ACTIVE:
        raise EditRequestRefused("Change requests are for live sites. Activate hosting to put your site online first.")
    description = (description or "").strip()
    if not description:
        raise EditRequestRefused("Tell us what you would like changed.")
    if len(description) > EDIT_REQUEST_MAX_LENGTH:
        raise EditRequestRefused(f"Please keep it under {EDIT_REQUEST_MAX_LENGTH:,} characters.")
    open_count = EditRequest.objects.filter(site=site, status__in=[_ER.PENDING, _ER.IN_PROGRESS]).count()
    if open_count >= OPEN_EDIT_REQUESTS_PER_SITE:
        raise EditRequestRefused(
            f"You already have {open_count} open requests for this site. We'll get to them soon; "
            "you can add more once some are done."
        )
    edit_request = EditRequest.objects.create(site=site, requested_by=user, description=description)
    emails.edit_request_email_queue(edit_request)
    logger.info("edit request %s created for site %s by customer %s", edit_request.pk, site.pk, user.pk)
    return edit_request


def edit_request_transition(*, edit_request_id: int, status: str, staff_note: str = "", staff_user) -> EditRequest:
    """Staff move a request along the workflow; the owner is emailed about the new status.
    Raises EditRequestTransitionRefused for a move the table does not allow."""
    note = (staff_note or "").strip()
    with transaction.atomic():
        edit_request = (
            EditRequest.objects.select_for_update(of=("self",)).select_related("site", "requested_by")
            .get(pk=edit_request_id)
        )
        current = edit_request.status
        if status not in EDIT_REQUEST_TRANSITIONS.get(current, frozenset()):
            raise EditRequestTransitionRefused(
                f"Edit request #{edit_request.pk} is {edit_request.get_status_display().lower()}; "
                f"it can't be marked {_ER(status).label.lower() if status in _ER.values else status}."
            )
        if status == _ER.REJECTED and not note:
            raise EditRequestTransitionRefused("Say why the request is rejected: the owner reads the note.")
        if len(note) > 5000:
            raise EditRequestTransitionRefused("The note is too long (5,000 characters at most).")
        edit_request.status = status
        if note:
            edit_request.staff_note = note
        if status in EDIT_REQUEST_RESOLVED:
            edit_request.resolved_at = timezone.now()
        edit_request.save(update_fields=["status", "staff_note", "resolved_at", "updated_at"])
        emails.edit_request_email_queue(edit_request)
    logger.info(
        "edit request %s: %s -> %s by staff %s", edit_request.pk, current, status, getattr(staff_user, "pk", None)
    )
    return edit_request


def edit_request_note_set(*, edit_request_id: int, staff_note: str, staff_user) -> None:
    """Correct the note without changing the status (no email: nothing happened to the request)."""
    note = (staff_note or "").strip()[:5000]
    EditRequest.objects.filter(pk=edit_request_id).update(staff_note=note, updated_at=timezone.now())
    logger.info("edit request %s: note changed by staff %s", edit_request_id, getattr(staff_user, "pk", None))


# --- Custom domains (DESIGN §9) ----------------------------------------------------------------

class DomainRefused(Exception):
    """The domain cannot be added; the message says why, in the owner's words."""


DOMAINS_PER_SITE = 5
# A pending domain whose TXT record never appears fails after this many days, which also frees the
# name for whoever can prove it (nobody can hold a domain they don't control for longer).
DOMAIN_PENDING_DAYS = 7
# Verified domains are checked again daily; one whose record has been missing this long fails
# (the domain may have changed hands) and stops serving the site.
DOMAIN_VERIFIED_RECHECK_HOURS = 24
DOMAIN_VERIFIED_GRACE_DAYS = 7
# One tick checks at most this many, the least recently checked first; each DNS lookup is capped
# at a few seconds, so a tick stays well inside the task time limit.
DOMAIN_CHECK_BATCH = 30

_DV = DomainVerificationRecord.Status


def _forget_verified_hosts_after_commit() -> None:
    from .domains import verified_hosts_forget

    transaction.on_commit(verified_hosts_forget)


def domain_claim(*, site_id, user, domain: str) -> DomainVerificationRecord:
    """An owner adds a custom domain to their live site: a pending record with the TXT record to
    publish. Raises DomainRefused."""
    from django.core.exceptions import ValidationError

    from .domains import TXT_VALUE_PREFIX, domain_normalise, txt_record_name

    try:
        domain = domain_normalise(domain)
    except ValidationError as exc:
        raise DomainRefused(exc.messages[0]) from None
    with transaction.atomic():
        site = Site.objects.select_for_update().filter(pk=site_id, owner=user).first()
        if site is None:
            raise DomainRefused("No such site.")
        if site.status != Site.Status.ACTIVE:
            raise DomainRefused("Custom domains are for live sites. Activate hosting to put your site online first.")
        if site.domains.count() >= DOMAINS_PER_SITE:
            raise DomainRefused(f"A site can have up to {DOMAINS_PER_SITE} domains. Remove one to add another.")
        # A failed claim does not hold the name: whoever can publish the record may claim it again.
        DomainVerificationRecord.objects.filter(domain=domain, status=_DV.FAILED).delete()
        try:
            with transaction.atomic():
                record = DomainVerificationRecord.objects.create(
                    site=site, domain=domain, txt_record_name=txt_record_name(domain),
                    # Unguessable, so nobody can prepare a record for a domain before its owner claims it.
                    txt_record_value=TXT_VALUE_PREFIX + secrets.token_urlsafe(24),
                )
        except IntegrityError:
            # Unique on domain: a concurrent or earlier claim won, for this site or another.
            raise DomainRefused("That domain is already connected to a WebMagic site.") from None
    logger.info("domain record %s claimed for site %s by customer %s", record.pk, site.pk, user.pk)
    return record


@transaction.atomic
def domain_delete(*, record_id: int, site_id, user) -> bool:
    """The owner disconnects a domain of one of their sites. False if it is not theirs (or already gone)."""
    record = (
        DomainVerificationRecord.objects.select_for_update(of=("self",))
        .filter(pk=record_id, site_id=site_id, site__owner=user).first()
    )
    if record is None:
        return False
    was_verified = record.status == _DV.VERIFIED
    record.delete()
    if was_verified:
        _forget_verified_hosts_after_commit()
    logger.info("domain record %s deleted by customer %s", record_id, user.pk)
    return True


def domain_check(*, record_id: int) -> DomainVerificationRecord | None:
    """Look for the record's TXT value in DNS and move its status. Idempotent; safe when two
    ticks check the same record. The lookup happens outside any transaction (no row is locked
    while we wait on the network); the answer is applied to the row as it is then."""
    from . import dns

    record = DomainVerificationRecord.objects.filter(pk=record_id).first()
    if record is None or record.status == _DV.FAILED:
        return record
    values: list[str] | None
    try:
        values = [value.strip() for value in dns.lookup_txt(record.txt_record_name)]
        lookup_error = ""
    except dns.DnsLookupError as exc:
        values, lookup_error = None, f"DNS lookup failed ({exc}); we'll try again."
    except Exception:
        logger.exception("domain record %s: TXT lookup crashed", record_id)
        values, lookup_error = None, "DNS lookup failed; we'll try again."

    with transaction.atomic():
        record = DomainVerificationRecord.objects.select_for_update().filter(pk=record_id).first()
        if record is None or record.status == _DV.FAILED:
            return record
        now = timezone.now()
        before = record.status
        record.last_checked_at = now
        if values is None:
            # No answer is not a "no": the status stays as it is.
            record.last_error = lookup_error[:300]
        elif record.txt_record_value in values:
            record.status = _DV.VERIFIED
            # verified_at is when the record was last found: re-checks move it forward, and a
            # verified domain fails only once it has been missing for DOMAIN_VERIFIED_GRACE_DAYS.
            record.verified_at = now
            record.last_error = ""
        else:
            record.last_error = (
                "TXT record found, but its value doesn't match." if values else "TXT record not found yet."
            )
            if record.status == _DV.PENDING and record.created_at <= now - timedelta(days=DOMAIN_PENDING_DAYS):
                record.status = _DV.FAILED
                record.last_error = f"No matching TXT record after {DOMAIN_PENDING_DAYS} days."
            elif record.status == _DV.VERIFIED and (record.verified_at or record.created_at) <= now - timedelta(
                days=DOMAIN_VERIFIED_GRACE_DAYS
            ):
                record.status = _DV.FAILED
                record.last_error = f"The TXT record has been missing for {DOMAIN_VERIFIED_GRACE_DAYS} days."
        record.save(update_fields=["status", "last_checked_at", "verified_at", "last_error", "updated_at"])
        if record.status != before:
            _forget_verified_hosts_after_commit()
            logger.info("domain record %s: %s -> %s", record.pk, before, record.status)
    return record


def domains_check_due(*, limit: int = DOMAIN_CHECK_BATCH) -> list[int]:
    """Ids to check on this tick: every pending record, and verified ones not checked for a day;
    least recently checked first, so a backlog is worked through in turn."""
    recheck_before = timezone.now() - timedelta(hours=DOMAIN_VERIFIED_RECHECK_HOURS)
    due = Q(status=_DV.PENDING) | (
        Q(status=_DV.VERIFIED) & (Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=recheck_before))
    )
    return list(
        DomainVerificationRecord.objects.filter(due)
        .order_by(F("last_checked_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)[:limit]
    )


# --- The owner's copy of their site ------------------------------------------------------------

SITE_ARCHIVE_README = """{business_name} — your website files
{underline}

Exported from WebMagic on {exported} (version {version}).

index.html   The whole website in one file. Open it in a browser to look at it.

To put it online somewhere else, upload index.html to any web host or static hosting
service (it needs no server-side code) and point your domain at it. Images and fonts
that the page loads from other addresses keep working as long as those addresses do.

You own this site: you may copy, change and host it wherever you like.
"""


def site_archive_build(*, site: Site, version: SiteVersion) -> bytes:
    """A ZIP of the site's current version, built in memory (one HTML document is small)."""
    exported = timezone.now()
    stamp = timezone.localtime(version.created_at).timetuple()[:6]
    readme = SITE_ARCHIVE_README.format(
        business_name=site.business_name, underline="=" * (len(site.business_name) + 23),
        exported=exported.strftime("%Y-%m-%d"), version=version.number,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("index.html", date_time=stamp), version.html.encode("utf-8"), zipfile.ZIP_DEFLATED)
        archive.writestr(zipfile.ZipInfo("README.txt", date_time=exported.timetuple()[:6]), readme.encode("utf-8"), zipfile.ZIP_DEFLATED)
    logger.info("site %s version %s exported as a ZIP", site.pk, version.number)
    return buffer.getvalue()
