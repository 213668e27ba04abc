import logging

from django.db import transaction
from django.db.models import Max

from .models import Site, SiteVersion

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


class TransferRefused(Exception):
    """The site cannot change hands now; the message is for staff."""


TRANSFERABLE_STATUSES = (Site.Status.OWNED, Site.Status.ACTIVE, Site.Status.SUSPENDED)


def site_ownership_transfer(*, site_id, new_owner_id, staff_user) -> Site:
    """Give a bought site to another customer account (a typo in the buyer's email, a business
    sold to someone else, a refund followed by a sale).

    A hosting subscription that is still billing is paid by the current owner's card at
    Recurrente and cannot be moved to someone else's: moving the row would have the old owner pay
    for a site they no longer see (and can no longer cancel from the portal). Such a transfer is
    refused; cancel hosting first (the site stays live until the paid period ends) and the new
    owner starts their own. Payments stay with whoever paid them.
    """
    from checkout.models import Subscription  # checkout depends on sites, not the reverse
    from customers.models import CustomerUser

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
        billing = (
            Subscription.objects.filter(
                site_id=site.pk, cancel_requested_at__isnull=True,
                status__in=[Subscription.Status.PENDING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE,
                            Subscription.Status.PAUSED],
            ).values_list("recurrente_subscription_id", flat=True).first()
        )
        if billing:
            raise TransferRefused(
                f"{site.slug} has hosting subscription {billing} billed to {site.owner.email}. Cancel it first "
                "(the site stays live until the paid period ends); the new owner then starts their own hosting."
            )
        previous_id = site.owner_id
        site.owner = new_owner
        site.save(update_fields=["owner", "updated_at"])
    logger.info("site %s: ownership transferred from customer %s to customer %s by staff %s",
                site.pk, previous_id, new_owner.pk, getattr(staff_user, "pk", None))
    return site
