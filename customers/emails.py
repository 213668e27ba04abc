"""The customers app's emails: welcome (set your password), password reset, email verification.

What each one says is in `templates/emails/<kind>.subject.txt`, `.txt` and `.html`; the functions
here choose the recipient and the context and queue it (webmagic.emails). Their links carry
tokens, so they are made when the email is sent, by the context builders at the end (registered
in CustomersConfig.ready()), and never written to the EmailLog.
"""

import logging
from typing import cast

from django.conf import settings
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from webmagic.emails import EmailNoLongerWanted, absolute_url, email_queue
from webmagic.models import EmailLog

from .models import CustomerUser, normalize_email_address
from .tokens import password_reset_token_generator, set_password_token_generator, verify_email_token_generator

logger = logging.getLogger(__name__)


# --- Queueing ------------------------------------------------------------------------------------

def welcome_email_queue(
    *, user: CustomerUser, site_name: str = "", site_url: str = "", hosting_price: str = "",
    resent_by_staff: bool = False, dedupe_key: str | None = None, checkout_session=None,
) -> EmailLog | None:
    """Queue the welcome email: after a purchase (naming the site bought and its hosting price),
    or a new set-your-password link staff resend. Its link is made when it is sent
    (welcome_context). Rows queued without `hosting_price` say the standard $95."""
    context: dict[str, str | bool] = (
        {"site_name": site_name, "site_url": site_url, "hosting_price": hosting_price} if site_name else {}
    )
    if resent_by_staff:
        context["resent_by_staff"] = True
    return email_queue(
        kind=EmailLog.Kind.WELCOME, to_email=user.email, context=context, dedupe_key=dedupe_key, user=user,
        checkout_session=checkout_session,
    )


def password_reset_email_queue(*, email: str) -> EmailLog:
    """One reset email for any address asked for: who it is for is found when it is sent
    (password_reset_context), see customers.services.password_reset_request. No dedupe key: each
    request is its own email."""
    # cast: email_queue answers None only for a dedupe key already used, and this one has none.
    return cast(EmailLog, email_queue(kind=EmailLog.Kind.PASSWORD_RESET, to_email=normalize_email_address(email)))


def verify_email_queue(*, user: CustomerUser) -> EmailLog | None:
    """Queue a verification email (no-op for a verified address). The link is made at send time."""
    if user.email_verified:
        return None
    log = email_queue(kind=EmailLog.Kind.VERIFY_EMAIL, to_email=user.email, user=user)
    logger.info("verification email queued for customer %s", user.pk)
    return log


# --- Links (made when the email is sent, never stored) --------------------------------------------

def _token_link_path(*, view_name: str, generator, user: CustomerUser) -> str:
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse(view_name, kwargs={"uidb64": uidb64, "token": generator.make_token(user)})


def set_password_path(*, user: CustomerUser) -> str:
    """The relative link for `user`; the token is made now and never stored."""
    return _token_link_path(view_name="customers:set_password", generator=set_password_token_generator, user=user)


def password_reset_path(*, user: CustomerUser) -> str:
    """A one-hour reset link, made when the email is sent and never stored."""
    return _token_link_path(view_name="customers:password_reset_confirm", generator=password_reset_token_generator, user=user)


def verify_email_path(*, user: CustomerUser) -> str:
    """A 24-hour verification link, made when the email is sent and never stored."""
    return _token_link_path(view_name="customers:verify_email", generator=verify_email_token_generator, user=user)


# --- Context builders (webmagic.emails.context_builder_register) ----------------------------------

def password_reset_account_for_email(*, email: str) -> CustomerUser | None:
    """The active account using an address, whether or not it ever chose a password."""
    normalized = normalize_email_address(email)
    if not normalized:
        return None
    return CustomerUser.objects.filter(email=normalized, is_active=True).first()


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
        "portal_url": absolute_url(resolve_url(settings.LOGIN_REDIRECT_URL)),
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
        "portal_url": absolute_url(resolve_url(settings.LOGIN_REDIRECT_URL)),
    }
