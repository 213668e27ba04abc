"""Context builders for customer emails whose links carry tokens (see webmagic/emails.py).

They run when the email is sent, so tokens are never written to the EmailLog."""

from webmagic.emails import absolute_url
from webmagic.models import EmailLog

from .services import set_password_path


def welcome_context(log: EmailLog) -> dict:
    user = log.user
    if user is None:
        raise ValueError(f"welcome email {log.pk} has no user to build a set-password link for")
    context = {
        "customer_name": user.get_short_name() if user.full_name else "",
        "login_url": absolute_url("/portal/login/"),
        "portal_url": absolute_url("/portal/"),
        "password_reset_url": absolute_url("/portal/password-reset/"),
    }
    if user.has_usable_password():
        # They chose a password since this was queued; a login link is the honest next step.
        context["set_password_url"] = ""
    else:
        context["set_password_url"] = absolute_url(set_password_path(user=user))
    return context
