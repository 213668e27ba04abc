"""Actions staff take on a customer's behalf from admin, built on the customer-facing services so
both follow the same rules."""

import logging
from typing import cast

from checkout.models import Subscription
from customers.models import CustomerUser

from .hosting import HostingCancelFailed, HostingRefused, hosting_cancel, subscription_cancellable_for_site

logger = logging.getLogger(__name__)


class StaffActionRefused(Exception):
    """The action does not apply to this row; the message is for staff."""


def subscription_cancel_by_staff(*, subscription_id: int, staff_user: CustomerUser) -> Subscription:
    """Cancel a hosting subscription at Recurrente (DELETE /subscriptions/{id}) exactly as the
    owner's "Cancel hosting" does: the site stays live until the paid period ends.

    Raises StaffActionRefused, hosting.HostingCancelFailed when Recurrente refused (nothing changed),
    or hosting.HostingCancelUnconfirmed when it gave no clear answer (it may have cancelled).
    """
    subscription = Subscription.objects.select_related("site").get(pk=subscription_id)
    su_id = subscription.recurrente_subscription_id
    if subscription.cancel_requested_at is not None:
        raise StaffActionRefused(f"{su_id} was already cancelled on {subscription.cancel_requested_at:%Y-%m-%d %H:%M} UTC.")
    site = subscription.site
    if site.owner_id is None:
        raise StaffActionRefused(f"{su_id}: site {site.slug} has no owner.")
    # hosting_cancel cancels the site's current billing subscription; refuse rather than cancel a
    # different one than the row staff selected (a site can mirror several at Recurrente).
    current = subscription_cancellable_for_site(site_id=site.pk)
    if current is None or current.pk != subscription.pk:
        raise StaffActionRefused(
            f"{su_id} is {subscription.get_status_display().lower()} and is not the billing subscription of {site.slug}; "
            "nothing to cancel."
        )
    try:
        cancelled = hosting_cancel(site_id=site.pk, user=cast(CustomerUser, site.owner))  # it has one (checked above)
    except HostingRefused as exc:
        raise StaffActionRefused(f"{su_id}: {exc}") from exc
    logger.info("subscription %s cancelled by staff %s (site %s)", cancelled.pk, getattr(staff_user, "pk", None), site.pk)
    return cancelled


__all__ = ["HostingCancelFailed", "StaffActionRefused", "subscription_cancel_by_staff"]
