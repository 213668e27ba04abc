"""The built-in imitation of Recurrente, used when no RECURRENTE_SECRET_KEY is set (never in
production). It answers the API calls the app makes, shows a hosted payment page, and sends
Svix-signed webhook deliveries shaped like Recurrente's to our own webhook URL over HTTP.
"""

import json
import logging
import secrets
import time
from datetime import timedelta

import requests
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from webmagic.webhook_signing import signed_headers

from .models import SandboxCheckout
from .recurrente import RecurrenteNotFound, RecurrenteValidationError

logger = logging.getLogger(__name__)

API_VERSION = "2024-04-24"


def _new_id(prefix: str) -> str:
    return f"{prefix}_sbx{secrets.token_hex(6)}"


def _iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds")


def _validate_checkout_request(payload: dict) -> None:
    """The rules Recurrente enforces that our code could break."""
    items = payload.get("items") or []
    if not items:
        raise RecurrenteValidationError("No se pudo procesar la solicitud", status=422, errors={"items": ["no puede estar en blanco"]})
    if len({item.get("charge_type") for item in items}) > 1:
        raise RecurrenteValidationError("one-time and recurring items cannot be mixed", status=422)
    for item in items:
        if not isinstance(item.get("amount_in_cents"), int) or item["amount_in_cents"] <= 0:
            raise RecurrenteValidationError("amount_in_cents must be a positive integer", status=422)
    metadata = payload.get("metadata") or {}
    if any(not isinstance(v, str) for v in metadata.values()):
        raise RecurrenteValidationError("metadata values must be strings", status=422)


class SandboxClient:
    """Same interface as RecurrenteClient, backed by SandboxCheckout rows."""

    def create_checkout(self, payload: dict) -> dict:
        _validate_checkout_request(payload)
        checkout = SandboxCheckout.objects.create(id=_new_id("ch"), request=payload)
        url = settings.SITE_URL + reverse("sandbox:checkout", args=[checkout.id])
        return {"id": checkout.id, "checkout_url": url}

    def get_checkout(self, checkout_id: str) -> dict:
        return checkout_resource(_get(checkout_id))

    def get_subscription(self, subscription_id: str, *, timeout: tuple | None = None) -> dict:
        checkout = SandboxCheckout.objects.filter(subscription_id=subscription_id).first()
        if checkout is None:
            raise RecurrenteNotFound("Not found", status=404)
        return subscription_resource(checkout)

    def cancel_subscription(self, subscription_id: str) -> dict:
        checkout = SandboxCheckout.objects.filter(subscription_id=subscription_id).first()
        if checkout is None:
            raise RecurrenteNotFound("Not found", status=404)
        with transaction.atomic():
            SandboxCheckout.objects.filter(pk=checkout.pk).update(subscription_status="cancelled")
            sandbox_send_later(checkout_id=checkout.id, event_type="subscription.cancel")
        return {"message": "Suscripción cancelada"}

    def create_refund(self, *, payment_intent_id: str = "", intent_id: str = "") -> dict:
        """Like Recurrente: the refund is `succeeded` at once, the answer names no payment, and no
        webhook follows (none is documented for refunds)."""
        checkout = SandboxCheckout.objects.filter(payment_id=payment_intent_id).first() if payment_intent_id else (
            SandboxCheckout.objects.filter(intent_id=intent_id).first()
        )
        if checkout is None or not (payment_intent_id or intent_id):
            raise RecurrenteNotFound("Not found", status=404)
        if checkout.refund_id:
            raise RecurrenteValidationError("El pago ya fue reembolsado", status=422, errors={"payment": ["ya reembolsado"]})
        checkout.refund_id, checkout.refund_status = _new_id("re"), "succeeded"
        checkout.save(update_fields=["refund_id", "refund_status"])
        return refund_resource(checkout)

    def get_refund(self, refund_id: str) -> dict:
        checkout = SandboxCheckout.objects.filter(refund_id=refund_id).first()
        if checkout is None or not refund_id:
            raise RecurrenteNotFound("Not found", status=404)
        return refund_resource(checkout)


def _get(checkout_id: str) -> SandboxCheckout:
    checkout = SandboxCheckout.objects.filter(pk=checkout_id).first()
    if checkout is None:
        raise RecurrenteNotFound("Not found", status=404)
    return checkout


# --- what the hosted page does --------------------------------------------------------------
def is_recurring(checkout: SandboxCheckout) -> bool:
    return checkout.request["items"][0].get("charge_type") == "recurring"


def sandbox_checkout_pay(*, checkout_id: str) -> SandboxCheckout:
    """The buyer pressed Pay: mark paid once and send the deliveries Recurrente would send."""
    with transaction.atomic():
        checkout = SandboxCheckout.objects.select_for_update().get(pk=checkout_id)
        if checkout.status != SandboxCheckout.Status.UNPAID:
            return checkout
        checkout.status = SandboxCheckout.Status.PAID
        checkout.paid_at = timezone.now()
        checkout.payment_id = _new_id("pa")
        checkout.intent_id = _new_id("in")
        if is_recurring(checkout):
            checkout.subscription_id = _new_id("su")
            checkout.subscription_status = "active"
            events = ["subscription.create", "payment_intent.succeeded"]
        else:
            # Every card payment arrives twice: the legacy and the unified event.
            events = ["payment_intent.succeeded", "intent.succeeded"]
        checkout.save()
        for event_type in events:
            sandbox_send_later(checkout_id=checkout.id, event_type=event_type)
    logger.info("sandbox checkout %s paid", checkout_id)
    return checkout


def sandbox_checkout_decline(*, checkout_id: str) -> SandboxCheckout:
    """The buyer pressed Decline: Recurrente reports the failure; the page stays payable."""
    with transaction.atomic():
        checkout = SandboxCheckout.objects.select_for_update().get(pk=checkout_id)
        if checkout.status != SandboxCheckout.Status.UNPAID:
            return checkout
        checkout.declines += 1
        checkout.save(update_fields=["declines"])
        sandbox_send_later(checkout_id=checkout.id, event_type="payment_intent.failed", sequence=checkout.declines)
    return checkout


SUBSCRIPTION_EVENTS = {
    "subscription.past_due": "past_due",
    "subscription.pause": "paused",
    "subscription.unpause": "active",
    "subscription.reactivate": "active",
    "subscription.cancel": "cancelled",
}


def sandbox_subscription_event(*, checkout_id: str, event_type: str) -> None:
    """Staff tooling: make the sandbox subscription go through a life-cycle event."""
    if event_type not in SUBSCRIPTION_EVENTS:
        raise ValueError(f"unknown subscription event {event_type}")
    with transaction.atomic():
        checkout = SandboxCheckout.objects.select_for_update().get(pk=checkout_id)
        if not checkout.subscription_id:
            raise ValueError("this sandbox checkout has no subscription")
        checkout.subscription_status = SUBSCRIPTION_EVENTS[event_type]
        checkout.save(update_fields=["subscription_status"])
        # Each press is a new delivery (its own svix id), even twice within a second.
        sandbox_send_later(checkout_id=checkout.id, event_type=event_type, sequence=time.time_ns())


def sandbox_send_later(*, checkout_id: str, event_type: str, sequence: int = 0) -> None:
    """Deliver after commit, unless SANDBOX_WEBHOOKS is off: then the sandbox behaves like
    Recurrente on test keys that send no webhooks, and only the reconciler completes flows."""
    if not settings.SANDBOX_WEBHOOKS:
        logger.info("sandbox webhooks are off: %s for %s not sent", event_type, checkout_id)
        return
    transaction.on_commit(lambda: sandbox_deliver.delay(checkout_id, event_type, sequence))


# --- resources and event bodies, shaped like the fixtures in checkout/tests/fixtures -------
def _amount(checkout: SandboxCheckout) -> tuple[int, str]:
    item = checkout.request["items"][0]
    return item["amount_in_cents"], item["currency"]


def _paymentable(checkout: SandboxCheckout) -> dict:
    if checkout.subscription_id:
        return {"type": "Subscription", "id": checkout.subscription_id, "tax_name": None, "tax_id": None,
                "address": None, "phone_number": None}
    return {"type": "OneTimePayment", "id": "on_" + checkout.id[3:], "tax_name": None, "tax_id": None,
            "address": None, "phone_number": None}


def checkout_resource(checkout: SandboxCheckout) -> dict:
    cents, currency = _amount(checkout)
    paid = checkout.status == SandboxCheckout.Status.PAID
    return {
        "id": checkout.id,
        "status": checkout.status,
        "live_mode": False,
        "currency": currency,
        "total_in_cents": cents,
        "latest_intent": {"id": checkout.intent_id, "type": "PaymentIntent", "created_at": _iso(checkout.paid_at), "data": {}}
        if paid else None,
        "payment": {"id": checkout.payment_id, "paymentable": _paymentable(checkout)} if paid else None,
        "payment_method": {"id": "pay_m_sandbox", "type": "card", "card": {"last4": "4242", "network": "visa"}} if paid else None,
        "transfer_setups": [],
        "metadata": checkout.request.get("metadata", {}),
        "success_url": checkout.request.get("success_url", ""),
        "cancel_url": checkout.request.get("cancel_url", ""),
        "expires_at": checkout.request.get("expires_at"),
        "created_at": _iso(checkout.created_at),
    }


def subscription_resource(checkout: SandboxCheckout) -> dict:
    start = checkout.paid_at or checkout.created_at
    return {
        "id": checkout.subscription_id,
        "status": checkout.subscription_status or "active",
        "created_at": _iso(start),
        "current_period_start": _iso(start),
        "current_period_end": _iso(start + timedelta(days=30)),
        "checkout": {"id": checkout.id},
    }


def refund_resource(checkout: SandboxCheckout) -> dict:
    cents, currency = _amount(checkout)
    return {
        "id": checkout.refund_id, "status": checkout.refund_status,
        "customer": _customer(checkout), "user_id": "us_sandbox",
        # Recurrente keeps its fee: the account gets back a little less than the customer does.
        "account_refunded_amount_in_cents": cents - cents * 44 // 1000, "customer_refunded_amount_in_cents": cents,
        "currency": currency, "created_at": _iso(timezone.now()),
    }


def _customer(checkout: SandboxCheckout) -> dict:
    return {"email": "sandbox-buyer@example.com", "full_name": "Sandbox Buyer", "id": "us_sandbox"}


def event_body(checkout: SandboxCheckout, event_type: str) -> dict:
    cents, currency = _amount(checkout)
    now = _iso(timezone.now())
    resource = checkout_resource(checkout)
    payment = {"id": checkout.payment_id, "paymentable": _paymentable(checkout)}
    if event_type == "payment_intent.succeeded":
        return {
            "id": checkout.payment_id, "event_type": event_type, "api_version": API_VERSION, "live_mode": False,
            "checkout": resource, "created_at": now, "failure_reason": None, "amount_in_cents": cents,
            "currency": currency, "fee": 0, "customer": _customer(checkout), "payment": payment,
        }
    if event_type == "intent.succeeded":
        return {
            "event_type": event_type, "type": "payment", "id": checkout.intent_id, "status": "succeeded",
            "created_at": now, "amount_in_cents": cents, "currency": currency, "customer": _customer(checkout),
            "checkout": resource, "payment": {"id": checkout.payment_id}, "details": {},
        }
    if event_type == "payment_intent.failed":
        return {
            "id": _new_id("pa"), "event_type": event_type, "api_version": API_VERSION, "live_mode": False,
            "checkout": {"id": checkout.id}, "created_at": now,
            "failure_reason": "Tu banco ha rechazado la transacción. (sandbox: Decline pressed)",
            "amount_in_cents": cents, "currency": currency, "customer": _customer(checkout),
        }
    if event_type.startswith("subscription."):
        return {
            "api_version": API_VERSION, "created_at": now, "customer_email": _customer(checkout)["email"],
            "customer_id": "us_sandbox", "customer_name": "Sandbox Buyer", "event_type": event_type,
            "id": checkout.subscription_id, "live_mode": False, "payment": payment,
            "product": {"id": "prod_sandbox", "name": "Website hosting", "prices": [{
                "amount_in_cents": cents, "billing_interval": "month", "billing_interval_count": 1,
                "charge_type": "recurring", "currency": currency,
            }]},
        }
    raise ValueError(f"sandbox cannot send {event_type}")


def sandbox_deliver_now(*, checkout_id: str, event_type: str, sequence: int = 0) -> int:
    """POST one signed delivery to our webhook URL, like Svix. Returns the HTTP status.

    The message id is fixed per (checkout, event, sequence) so a retried task is the same
    delivery, exactly as Svix keeps the svix-id across retries.
    """
    checkout = SandboxCheckout.objects.get(pk=checkout_id)
    body = json.dumps(event_body(checkout, event_type), ensure_ascii=False).encode()
    msg_id = f"msg_sbx_{checkout.id}_{event_type.replace('.', '_')}_{sequence}"
    headers = signed_headers(secret=settings.RECURRENTE_WEBHOOK_SECRETS[0], msg_id=msg_id, body=body)
    headers["Content-Type"] = "application/json"
    # Where Recurrente is configured to deliver; the sandbox delivers to the same place.
    url = settings.SITE_URL + reverse("webhooks:recurrente")
    response = requests.post(url, data=body, headers=headers, timeout=(3.05, 15))
    logger.info("sandbox delivery %s (%s) answered %s", msg_id, event_type, response.status_code)
    return response.status_code


class DeliveryRefused(Exception):
    pass


# Named as before it moved here, so a delivery queued by an older worker still finds it.
@shared_task(name="checkout.tasks.sandbox_deliver", bind=True, max_retries=7, acks_late=True)
def sandbox_deliver(self, checkout_id: str, event_type: str, sequence: int = 0) -> None:
    """Send one sandbox webhook delivery; retry like Svix when our endpoint does not answer 2xx."""
    try:
        status = sandbox_deliver_now(checkout_id=checkout_id, event_type=event_type, sequence=sequence)
        if not 200 <= status < 300:
            raise DeliveryRefused(f"webhook endpoint answered {status}")
    except (requests.RequestException, DeliveryRefused) as exc:
        logger.warning("sandbox delivery %s/%s failed: %s", checkout_id, event_type, exc)
        raise self.retry(exc=exc, countdown=5 * 3**self.request.retries) from exc
