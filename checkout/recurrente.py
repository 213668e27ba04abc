"""Recurrente's REST API: explicit timeouts, typed errors, no secrets in logs.

Get a client from `checkout.clients.recurrente_client()`: the real one, or the built-in sandbox
(checkout/sandbox.py) when no RECURRENTE_SECRET_KEY is configured outside production.
"""

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from webmagic.http import request_never_sent

logger = logging.getLogger(__name__)

# One JSON object from Recurrente (an API answer, a webhook payload, or a part of one): its values
# are whatever the JSON held, so they are read through checkout/recurrente_data.py's checks.
JsonObject = dict[str, Any]
# (connect, read) seconds, as requests takes them.
Timeout = tuple[float, float]


class RecurrenteError(Exception):
    """Any failure talking to Recurrente. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, errors: JsonObject | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or {}


class RecurrenteAuthError(RecurrenteError):
    """401: our API keys are wrong. Retrying will not help; staff must fix configuration."""


class RecurrenteValidationError(RecurrenteError):
    """422: Recurrente refused what we sent."""


class RecurrenteNotFound(RecurrenteError):
    """404: no such checkout/subscription on Recurrente's side."""


class RecurrenteUnavailable(RecurrenteError):
    """Timeouts, connection errors and 5xx: Recurrente may be fine a little later.

    Unless it is the subclass RecurrenteNotSent, the request may have reached Recurrente and been
    acted on (a read timeout, a connection dropped after sending, a 5xx): for a call that moves
    money, the outcome is unknown."""


class RecurrenteNotSent(RecurrenteUnavailable):
    """The request certainly never reached Recurrente: the connection could not be made (refused,
    DNS failure, connect timeout). Nothing can have happened on Recurrente's side."""


class RecurrenteRedirect(RecurrenteError):
    """A 3xx answer. The API never redirects; following one would send our secret key to wherever
    it points, so it is never followed. A POST may have been acted on before the redirect."""


class RecurrenteClient:
    def __init__(
        self, *, base_url: str, secret_key: str, public_key: str = "", timeout: Timeout = (3.05, 10),
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        # Sent with each request rather than set on the session: a session may be shared with
        # other code, which must never send our keys anywhere.
        self.headers = {"X-SECRET-KEY": secret_key, "Accept": "application/json"}
        if public_key:
            self.headers["X-PUBLIC-KEY"] = public_key

    # --- calls -------------------------------------------------------------------------------
    def create_checkout(self, payload: JsonObject) -> JsonObject:
        """POST /checkouts → {"id": "ch_…", "checkout_url": "…"}. Not idempotent: never retried here."""
        data = self._request("POST", "/checkouts", json=payload)
        if not data.get("id") or not data.get("checkout_url"):
            raise RecurrenteError("checkout response lacks id or checkout_url")
        return data

    def get_checkout(self, checkout_id: str) -> JsonObject:
        return self._request("GET", f"/checkouts/{_path_id(checkout_id)}")

    def get_subscription(self, subscription_id: str, *, timeout: Timeout | None = None) -> JsonObject:
        """`timeout`: (connect, read) seconds for this call, when a caller cannot wait the default."""
        return self._request("GET", f"/subscriptions/{_path_id(subscription_id)}", timeout=timeout)

    def cancel_subscription(self, subscription_id: str) -> JsonObject:
        return self._request("DELETE", f"/subscriptions/{_path_id(subscription_id)}")

    def create_refund(self, *, payment_intent_id: str = "", intent_id: str = "") -> JsonObject:
        """Older accounts take payment_intent_id (pa_…), newer ones intent_id (in_…)."""
        body = {"intent_id": intent_id} if intent_id else {"payment_intent_id": payment_intent_id}
        return self._request("POST", "/refunds", json=body)

    def get_refund(self, refund_id: str) -> JsonObject:
        return self._request("GET", f"/refunds/{_path_id(refund_id)}")

    # --- plumbing ----------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, timeout: Timeout | None = None, **kwargs: Any) -> JsonObject:
        url = self.base_url + path
        try:
            # Never follow a redirect: requests would resend the X-SECRET-KEY header to any host.
            response = self.session.request(
                method, url, headers=self.headers, timeout=timeout or self.timeout, allow_redirects=False, **kwargs
            )
        except requests.ConnectTimeout as exc:
            logger.warning("recurrente %s %s: could not connect in time", method, path)
            raise RecurrenteNotSent("Could not connect to Recurrente in time; the request was not sent") from exc
        except requests.Timeout as exc:
            logger.warning("recurrente %s %s timed out", method, path)
            raise RecurrenteUnavailable("Recurrente did not answer in time") from exc
        except requests.ConnectionError as exc:
            if request_never_sent(exc):
                logger.warning("recurrente %s %s: could not connect (%s)", method, path, type(exc.args[0].reason).__name__)
                raise RecurrenteNotSent("Could not connect to Recurrente; the request was not sent") from exc
            logger.warning("recurrente %s %s: connection failed (%s)", method, path, type(exc).__name__)
            raise RecurrenteUnavailable("The connection to Recurrente failed") from exc
        except requests.RequestException as exc:
            logger.warning("recurrente %s %s failed: %s", method, path, type(exc).__name__)
            raise RecurrenteUnavailable("Could not reach Recurrente") from exc
        return self._parse(method, path, response)

    @staticmethod
    def _parse(method: str, path: str, response: requests.Response) -> JsonObject:
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if 300 <= response.status_code < 400:
            # Only the target's host is logged: the request's headers (our key) never are.
            target = urlsplit(response.headers.get("Location", "")).hostname or "no location"
            logger.warning("recurrente %s %s answered %s to %s; not followed", method, path, response.status_code, target)
            raise RecurrenteRedirect("Recurrente answered with a redirect, not followed", status=response.status_code)
        if response.status_code < 400:
            return data
        message = str(data.get("message") or response.reason or "error")[:300]
        errors = data.get("errors") if isinstance(data.get("errors"), dict) else {}
        logger.warning("recurrente %s %s answered %s: %s", method, path, response.status_code, message)
        status = response.status_code
        if status == 401:
            raise RecurrenteAuthError(message, status=status, errors=errors)
        if status == 404:
            raise RecurrenteNotFound(message, status=status, errors=errors)
        if status in (400, 409, 422):
            raise RecurrenteValidationError(message, status=status, errors=errors)
        if status >= 500 or status == 429:
            raise RecurrenteUnavailable(message, status=status, errors=errors)
        raise RecurrenteError(message, status=status, errors=errors)


def recurrente_time(value: object) -> datetime | None:
    """A timestamp from Recurrente as an aware datetime (UTC when it names no offset), or None:
    comparing a naive time with our aware ones would raise instead of answering."""
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _path_id(value: str) -> str:
    """Ids go into URL paths; refuse anything that could change the path."""
    if not value or not all(c.isalnum() or c == "_" for c in value):
        raise ValueError("malformed Recurrente id")
    return value
