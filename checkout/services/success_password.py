""""Set your password now" on the success page (issue 16, part 2).

The browser that paid may choose the account password right there, instead of hunting for the
welcome email first. Who may do it is decided here, never by the success link alone (that link is
a capability to *see* the page, and it travels through Recurrente's redirect):

- the browser is bound to the checkout by its own Django session, written when its purchase form
  (or its recovery link) created or reused that checkout;
- the payment is confirmed and fulfilment linked the checkout to an account;
- that account has no usable password yet (so this works once: the first password ends it), and
  was created by this very purchase and holds nothing else. An older password-less account (a
  previous purchase never claimed) is not offered: otherwise paying $495 with someone else's
  address would open that person's earlier sites and receipts.

The welcome email's link keeps working until a password exists: it is an HMAC over the password
hash (customers/tokens.py), so the password set here spends it, and it then says it was used.
"""

import logging

from django.contrib.sessions.backends.base import SessionBase

from checkout.models import CheckoutSession
from customers.models import CustomerUser
from sites.models import Site

logger = logging.getLogger(__name__)

# The checkouts this browser started, newest last. A handful is plenty: a buyer retrying a form,
# or buying a second site, never needs more, and the session row stays small.
BOUND_CHECKOUTS_SESSION_KEY = "checkout_sessions_started_here"
BOUND_CHECKOUTS_KEPT = 5


def checkout_bind_to_browser(*, browser_session: SessionBase, checkout_session: CheckoutSession) -> None:
    """Remember in this browser's session that it started (or reused) `checkout_session`."""
    checkout_id = str(checkout_session.pk)
    already = browser_session.get(BOUND_CHECKOUTS_SESSION_KEY, [])
    if already[-1:] == [checkout_id]:
        return  # a retry of the same form: no session write
    bound = [i for i in already if i != checkout_id]
    browser_session[BOUND_CHECKOUTS_SESSION_KEY] = [*bound, checkout_id][-BOUND_CHECKOUTS_KEPT:]


def checkout_is_bound_to_browser(*, browser_session: SessionBase, checkout_session: CheckoutSession) -> bool:
    return str(checkout_session.pk) in browser_session.get(BOUND_CHECKOUTS_SESSION_KEY, [])


def success_password_account(
    *, browser_session: SessionBase, checkout_session: CheckoutSession, state: str
) -> CustomerUser | None:
    """The account whose password this browser may set from the success page, or None.

    `state` is the page's payment state (checkout.selectors.payment_state): only "confirmed"
    means the payment is ours and the checkout names its account. Cheap checks come first, so an
    unbound visitor costs no query at all."""
    if state != "confirmed" or not checkout_session.user_id:
        return None
    if not checkout_is_bound_to_browser(browser_session=browser_session, checkout_session=checkout_session):
        return None
    user = CustomerUser.objects.filter(pk=checkout_session.user_id, is_active=True).first()
    if user is None or user.has_usable_password():
        return None
    if not _account_created_by(user=user, checkout_session=checkout_session):
        logger.info("success-page password not offered for customer %s: the account predates checkout %s",
                    user.pk, checkout_session.pk)
        return None
    return user


def _account_created_by(*, user: CustomerUser, checkout_session: CheckoutSession) -> bool:
    """The account was made for this purchase: created after the checkout began, owning no other site."""
    if user.created_at < checkout_session.created_at:
        return False
    return not Site.objects.filter(owner=user).exclude(pk=checkout_session.site_id).exists()
