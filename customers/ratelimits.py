"""Rate limits for account endpoints (django-ratelimit on the shared cache; 429 page from
settings.RATELIMIT_VIEW). Counted per client IP (webmagic.http.client_ip via
RATELIMIT_IP_META_KEY) and per normalised email, so one address cannot be hammered from many IPs
and one IP cannot sweep many addresses. The portal and admin logins share their counters: an
attacker gains nothing by switching between the two forms.

While the cache is down these limits cannot count, and they fail closed: a 503 page ("We can't sign
you in right now") instead of a login or a reset email nobody counted (webmagic/ratelimit.py)."""

from webmagic.ratelimit import FAIL_CLOSED, ratelimit

from .models import normalize_email_address

LOGIN_IP_RATES = ("10/m", "100/h")
LOGIN_EMAIL_RATES = ("5/m", "30/h")
PASSWORD_RESET_IP_RATES = ("5/m", "30/h")
PASSWORD_RESET_EMAIL_RATES = ("3/15m", "10/d")
VERIFY_RESEND_IP_RATES = ("5/m", "30/h")
VERIFY_RESEND_EMAIL_RATES = ("3/15m", "10/d")
PASSWORD_CHANGE_RATE = "10/h"
SUCCESS_PASSWORD_IP_RATES = ("10/m", "60/h")
SUCCESS_PASSWORD_CHECKOUT_RATES = ("10/m", "30/h")


def _post_email(field: str):
    def key(group, request) -> str:
        # "Maria@X.com " and "maria@x.com" are one mailbox, so they share one counter.
        return normalize_email_address(request.POST.get(field, ""))[:254]

    return key


def _account_email(group, request) -> str:
    return normalize_email_address(request.user.email) if request.user.is_authenticated else ""


def _limit(*, action: str, **kwargs):
    return ratelimit(method="POST", when_cache_down=FAIL_CLOSED, unavailable_action=action, **kwargs)


def _limits(view, *, prefix: str, ip_rates, email_rates, email_key, action: str):
    for rate in ip_rates:
        view = _limit(group=f"{prefix}-ip", key="ip", rate=rate, action=action)(view)
    for rate in email_rates:
        view = _limit(group=f"{prefix}-email", key=email_key, rate=rate, action=action)(view)
    return view


def login_limits(view):
    """Portal and admin login forms both post the address as `username`."""
    return _limits(
        view, prefix="login", ip_rates=LOGIN_IP_RATES, email_rates=LOGIN_EMAIL_RATES, email_key=_post_email("username"),
        action="sign you in",
    )


def password_reset_limits(view):
    return _limits(
        view, prefix="password-reset", ip_rates=PASSWORD_RESET_IP_RATES, email_rates=PASSWORD_RESET_EMAIL_RATES,
        email_key=_post_email("email"), action="send you a reset link",
    )


def verify_resend_limits(view):
    return _limits(
        view, prefix="verify-resend", ip_rates=VERIFY_RESEND_IP_RATES, email_rates=VERIFY_RESEND_EMAIL_RATES,
        email_key=_account_email, action="send you a new confirmation link",
    )


def _password_change_rate(group, request) -> str | None:
    # Only the password form counts (None = not limited): saving one's name is not a guess.
    return PASSWORD_CHANGE_RATE if request.POST.get("action") == "password" else None


def password_change_limits(view):
    """Slows down guessing the current password from a stolen session."""
    return _limit(group="password-change", key="user_or_ip", rate=_password_change_rate, action="change your password")(view)


def _checkout_param(group, request) -> str:
    return request.GET.get("session", "")[:64]


def success_password_limits(view):
    """The success page's first-password form, per IP and per checkout (the account it names)."""
    action = "save your password"
    for rate in SUCCESS_PASSWORD_IP_RATES:
        view = _limit(group="success-password-ip", key="ip", rate=rate, action=action)(view)
    for rate in SUCCESS_PASSWORD_CHECKOUT_RATES:
        view = _limit(group="success-password-checkout", key=_checkout_param, rate=rate, action=action)(view)
    return view
