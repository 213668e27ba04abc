"""Context builders for customer emails whose links carry tokens (see webmagic/emails.py).

They run when the email is sent, so tokens are never written to the EmailLog."""

from django.urls import reverse

from webmagic.emails import absolute_url
from webmagic.models import EmailLog

from .models import CustomerUser
from .services import password_reset_path, set_password_path, verify_email_path


def _user(log: EmailLog) -> CustomerUser:
    if log.user is None:
        raise ValueError(f"{log.kind} email {log.pk} has no user to build a link for")
    return log.user


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
    user = _user(log)
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
