import logging

from django.contrib.auth import login, update_session_auth_hash
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode

from webmagic.models import EmailLog

from . import emails
from .models import CustomerUser, normalize_email_address
from .tokens import set_password_token_generator

logger = logging.getLogger(__name__)


def customer_get_or_create_for_purchase(
    *, email: str, full_name: str = "", recurrente_customer_id: str = ""
) -> tuple[CustomerUser, bool]:
    """The account for a buyer's email (any capitalisation), created without a usable password
    if there is none. Safe when two payments for one email are processed at the same time."""
    normalized = normalize_email_address(email)
    if not normalized:
        raise ValueError("a purchase needs the buyer's email")
    user = CustomerUser.objects.filter(email=normalized).first()
    created = False
    if user is None:
        try:
            # A savepoint: losing the race must not break the caller's transaction.
            with transaction.atomic():
                user = CustomerUser.objects.create_user(
                    normalized, full_name=full_name[:200], recurrente_customer_id=recurrente_customer_id[:64]
                )
            created = True
        except IntegrityError:
            # Another worker created it between our read and our insert (the case-insensitive
            # unique constraint made us wait for its commit): use that account.
            user = CustomerUser.objects.get(email=normalized)
    if not created:
        updates = {}
        if full_name and not user.full_name:
            updates["full_name"] = full_name[:200]
        if recurrente_customer_id and not user.recurrente_customer_id:
            updates["recurrente_customer_id"] = recurrente_customer_id[:64]
        if updates:
            CustomerUser.objects.filter(pk=user.pk).update(**updates, updated_at=timezone.now())
            for field, value in updates.items():
                setattr(user, field, value)
    logger.info("customer %s %s for a purchase", user.pk, "created" if created else "found")
    return user, created


# --- Set-your-password links ---------------------------------------------------------------------

def set_password_user_from_uidb64(*, uidb64: str) -> CustomerUser | None:
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (TypeError, ValueError, OverflowError):
        return None
    return CustomerUser.objects.filter(pk=pk, is_active=True).first()


def set_password_token_check(*, user: CustomerUser | None, token: str | None) -> bool:
    return bool(user and token) and set_password_token_generator.check_token(user, token)


@transaction.atomic
def customer_password_set_from_link(*, user: CustomerUser, password: str) -> CustomerUser:
    """Set the password chosen through an emailed link. The link reached this inbox, so the
    address is verified too. Changing the password hash spends the link."""
    user = CustomerUser.objects.select_for_update().get(pk=user.pk)
    _first_password_save(user=user, password=password)
    logger.info("customer %s set a password from an emailed link", user.pk)
    return user


def _first_password_save(*, user: CustomerUser, password: str) -> None:
    """The password, and the address verified with it (the caller proved the inbox or the
    purchase); the row is locked by the caller."""
    user.set_password(password)
    fields = ["password", "updated_at"]
    if not user.email_verified:
        user.email_verified = True
        user.email_verified_at = timezone.now()
        fields += ["email_verified", "email_verified_at"]
    user.save(update_fields=fields)


class PasswordAlreadySet(Exception):
    """The account got a password meanwhile (another tab, the emailed link): nothing was changed."""


@transaction.atomic
def customer_password_set_after_purchase(*, user: CustomerUser, password: str) -> CustomerUser:
    """Set the first password from the success page of the purchase that created the account
    (checkout.services.success_password decides who may). Once only: the row lock and the check
    under it mean a double submit, or the emailed link used at the same moment, sets one password
    and the other gets PasswordAlreadySet. The new hash spends the welcome email's link.

    The address counts as verified, as with the emailed link: the account holds nothing but what
    this browser has just paid for, and whoever reads the inbox can still take it over with a
    reset link (a password change signs every other session out)."""
    user = CustomerUser.objects.select_for_update().get(pk=user.pk)
    if user.has_usable_password():
        raise PasswordAlreadySet(user.pk)
    _first_password_save(user=user, password=password)
    logger.info("customer %s set a password from the success page", user.pk)
    return user


# --- Signing in ---------------------------------------------------------------------------------

def customer_login(*, request: HttpRequest, user: CustomerUser) -> None:
    """Log `user` in and count it. Django's login() rotates the session key (a session id planted
    before sign-in is worthless afterwards) and stamps last_login."""
    login(request, user)
    # One UPDATE with F(): two sign-ins at once must both count.
    CustomerUser.objects.filter(pk=user.pk).update(login_count=F("login_count") + 1, last_login=timezone.now())
    logger.info("customer %s signed in", user.pk)


# --- Password reset -----------------------------------------------------------------------------

def password_reset_request(*, email: str) -> EmailLog:
    """Start a reset for whoever uses `email`: one reset email row for every request, known address
    or not, sent after commit by the ordinary email task. The account is looked up when the email
    is sent (customers.emails.password_reset_context), which cancels it if there is none.

    Looking the account up here, and writing a row only for real ones, made unknown addresses
    answer faster, which told anyone timing the form who has an account; so the request does the
    same work for every address (one INSERT, one publish after commit). The row is also what makes
    the request durable: if the broker is down at commit, or loses the message, the queued row is
    sent by `resend_stuck_emails`. No dedupe key: each request is its own email, and the per-email
    and per-IP rate limits bound how many there are."""
    log = emails.password_reset_email_queue(email=email)
    logger.info("password reset request accepted as email %s", log.pk)
    return log


# --- Email verification -------------------------------------------------------------------------

def customer_email_verify(*, user: CustomerUser) -> bool:
    """Mark the address verified. A conditional UPDATE, so two confirmations at once change it once;
    flipping `email_verified` is also what spends the link. Returns whether this call changed it."""
    now = timezone.now()
    changed = CustomerUser.objects.filter(pk=user.pk, email_verified=False).update(
        email_verified=True, email_verified_at=now, updated_at=now
    )
    if changed:
        user.email_verified, user.email_verified_at = True, now
        logger.info("customer %s verified their email", user.pk)
    return bool(changed)


# --- Account settings ---------------------------------------------------------------------------

def customer_profile_update(*, user: CustomerUser, full_name: str, phone: str) -> CustomerUser:
    user.full_name = full_name[:200]
    user.phone = phone[:40]
    user.save(update_fields=["full_name", "phone", "updated_at"])
    logger.info("customer %s updated their profile", user.pk)
    return user


def customer_password_change(*, request: HttpRequest, user: CustomerUser, password: str) -> CustomerUser:
    """Change the password from account settings. Sessions hold an HMAC of the password hash, so
    every other session of this account is signed out by the change; update_session_auth_hash
    keeps (and rotates) the one making the change."""
    user.set_password(password)
    user.save(update_fields=["password", "updated_at"])
    update_session_auth_hash(request, user)
    logger.info("customer %s changed their password", user.pk)
    return user
