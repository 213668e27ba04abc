import logging

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from webmagic.emails import email_queue
from webmagic.models import EmailLog

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
    user = CustomerUser.objects.filter(email__iexact=normalized).first()
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
            user = CustomerUser.objects.get(email__iexact=normalized)
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

def set_password_path(*, user: CustomerUser) -> str:
    """The relative link for `user`; the token is made now and never stored."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = set_password_token_generator.make_token(user)
    return reverse("customers:set_password", kwargs={"uidb64": uidb64, "token": token})


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
    user.set_password(password)
    fields = ["password", "updated_at"]
    if not user.email_verified:
        user.email_verified = True
        user.email_verified_at = timezone.now()
        fields += ["email_verified", "email_verified_at"]
    user.save(update_fields=fields)
    logger.info("customer %s set a password from an emailed link", user.pk)
    return user


def customer_welcome_email_queue(
    *, user: CustomerUser, subject: str = "Welcome to WebMagic — set your password", context: dict | None = None,
    dedupe_key: str | None = None, checkout_session=None,
) -> EmailLog | None:
    """Queue the welcome email. Its set-your-password link is built when it is sent
    (customers.emails.welcome_context), so no token is ever stored."""
    return email_queue(
        kind=EmailLog.Kind.WELCOME, to_email=user.email, subject=subject, context=context or {},
        dedupe_key=dedupe_key, user=user, checkout_session=checkout_session,
    )
