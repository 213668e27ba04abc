"""Context builders for customer emails whose links carry tokens (see webmagic/emails.py).

They run when the email is sent, so tokens are never written to the EmailLog."""

from django.urls import reverse

from webmagic.emails import EmailNoLongerWanted, absolute_url
from webmagic.models import EmailLog

from .models import CustomerUser, normalize_email_address
from .services import password_reset_account_for_email, password_reset_path, set_password_path, verify_email_path


def _user(log: EmailLog) -> CustomerUser:
    if log.user is None:
        raise ValueError(f"{log.kind} email {log.pk} has no user to build a link for")
    return log.user


def _password_reset_account(log: EmailLog) -> CustomerUser:
    """The account a reset email is for, found when it is sent. The reset form queues one email for
    every request, known address or not (customers.services.password_reset_request), so an email
    for an address no active account uses is cancelled here, recorded as `cancelled`, never sent.
    An account closed, or moved to another address, since the request gets no link either."""
    user = log.user or password_reset_account_for_email(email=log.to_email)
    if user is None or not user.is_active or user.email != normalize_email_address(log.to_email):
        raise EmailNoLongerWanted("no active account uses this address")
    if log.user_id is None:
        # For the record (the email log, the account's emails in admin). The row is locked by this
        # attempt, and the UPDATE commits with the send: an attempt that fails leaves it unset.
        EmailLog.objects.filter(pk=log.pk, user__isnull=True).update(user=user)
    return user


def _greeting(user: CustomerUser) -> str:
    return user.get_short_name() if user.full_name else ""


def welcome_context(log: EmailLog) -> dict:
    user = _user(log)
    context = {
        "customer_name": _greeting(user),
        "login_url": absolute_url(reverse("customers:login")),
        "portal_url": absolute_url(reverse("customers:dashboard")),
        "password_reset_url": absolute_url(reverse("customers:password_reset")),
    }
    if user.has_usable_password():
        # They chose a password since this was queued; a login link is the honest next step.
        context["set_password_url"] = ""
    else:
        context["set_password_url"] = absolute_url(set_password_path(user=user))
    return context


def password_reset_context(log: EmailLog) -> dict:
    user = _password_reset_account(log)
    return {
        "customer_name": _greeting(user),
        "email": user.email,
        "has_password": user.has_usable_password(),
        "reset_url": absolute_url(password_reset_path(user=user)),
        "password_reset_url": absolute_url(reverse("customers:password_reset")),
    }


def verify_email_context(log: EmailLog) -> dict:
    user = _user(log)
    return {
        "customer_name": _greeting(user),
        "email": user.email,
        "verify_url": absolute_url(verify_email_path(user=user)),
        "portal_url": absolute_url(reverse("customers:dashboard")),
    }
