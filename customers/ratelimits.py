"""Rate limits for account endpoints (django-ratelimit on the shared cache; 429 page from
settings.RATELIMIT_VIEW). Counted per client IP (webmagic.http.client_ip via
RATELIMIT_IP_META_KEY) and per normalised email, so one address cannot be hammered from many IPs
and one IP cannot sweep many addresses. The portal and admin logins share their counters: an
attacker gains nothing by switching between the two forms."""

from django_ratelimit.decorators import ratelimit

from .models import normalize_email_address

LOGIN_IP_RATES = ("10/m", "100/h")
LOGIN_EMAIL_RATES = ("5/m", "30/h")
PASSWORD_RESET_IP_RATES = ("5/m", "30/h")
PASSWORD_RESET_EMAIL_RATES = ("3/15m", "10/d")
VERIFY_RESEND_IP_RATES = ("5/m", "30/h")
VERIFY_RESEND_EMAIL_RATES = ("3/15m", "10/d")
PASSWORD_CHANGE_RATE = "10/h"


def _post_email(field: str):
    def key(group, request) -> str:
        # "Maria@X.com " and "maria@x.com" are one mailbox, so they share one counter.
        return normalize_email_address(request.POST.get(field, ""))[:254]

    return key


def _account_email(group, request) -> str:
    return normalize_email_address(request.user.email) if request.user.is_authenticated else ""


def _limits(view, *, prefix: str, ip_rates, email_rates, email_key):
    for rate in ip_rates:
        view = ratelimit(group=f"{prefix}-ip", key="ip", rate=rate, method="POST", block=True)(view)
    for rate in email_rates:
        view = ratelimit(group=f"{prefix}-email", key=email_key, rate=rate, method="POST", block=True)(view)
    return view


def login_limits(view):
    """Portal and admin login forms both post the address as `username`."""
    return _limits(view, prefix="login", ip_rates=LOGIN_IP_RATES, email_rates=LOGIN_EMAIL_RATES, email_key=_post_email("username"))


def password_reset_limits(view):
    return _limits(
        view, prefix="password-reset", ip_rates=PASSWORD_RESET_IP_RATES, email_rates=PASSWORD_RESET_EMAIL_RATES,
        email_key=_post_email("email"),
    )


def verify_resend_limits(view):
    return _limits(
        view, prefix="verify-resend", ip_rates=VERIFY_RESEND_IP_RATES, email_rates=VERIFY_RESEND_EMAIL_RATES,
        email_key=_account_email,
    )


def _password_change_rate(group, request) -> str | None:
    # Only the password form counts (None = not limited): saving one's name is not a guess.
    return PASSWORD_CHANGE_RATE if request.POST.get("action") == "password" else None


def password_change_limits(view):
    """Slows down guessing the current password from a stolen session."""
    return ratelimit(group="password-change", key="user_or_ip", rate=_password_change_rate, method="POST", block=True)(view)
