"""Svix webhook signatures, as Recurrente sends them (see docs in README): verified by the
webhooks app, made by the built-in sandbox, so both sit on this one base module.

signature = base64(HMAC-SHA256(base64decode(secret without "whsec_"), f"{id}.{timestamp}.{body}"))
The header holds one or more space-separated "v1,<signature>" values (several during rotation).
"""

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

TOLERANCE_SECONDS = 300  # Svix's own default; settings.WEBHOOK_TOLERANCE_SECONDS is passed in
HEADER_PREFIXES = ("svix-", "webhook-")

# Why a delivery was refused, as counted in WebhookRejection (its Reason choices use these values).
BAD_SIGNATURE = "bad_signature"
NO_SECRET = "no_secret"
MISSING_HEADERS = "missing_headers"
STALE_TIMESTAMP = "stale_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
# 401 when the signature is wrong or cannot be checked at all; anything else is a malformed request.
UNAUTHORISED_REASONS = frozenset({BAD_SIGNATURE, NO_SECRET})


class SignatureError(Exception):
    """The delivery cannot be trusted; the message says why (safe to log, holds no secret) and
    `reason` is one of the codes above, so callers never match on the message text."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason

    @property
    def status(self) -> int:
        return 401 if self.reason in UNAUTHORISED_REASONS else 400


def _secret_bytes(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        # A configured secret we cannot use is, for the operator, the same problem as none at all.
        raise SignatureError("configured webhook secret is not valid base64", reason=NO_SECRET) from exc


def sign(*, secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The `v1,<base64>` signature Svix would send for this delivery."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(*, secret: str, msg_id: str, body: bytes, timestamp: int | None = None, prefix: str = "svix-") -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        f"{prefix}id": msg_id,
        f"{prefix}timestamp": str(timestamp),
        f"{prefix}signature": sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for prefix in HEADER_PREFIXES:
        value = headers.get(prefix + name)
        if value is not None:
            return value
    return None


def verify(
    *, headers: Mapping[str, str], body: bytes, secrets: Iterable[str], now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a delivery and return its message id, or raise SignatureError.

    `headers` maps lower-case header names to values. Every configured secret is tried (rotation)
    against every v1 signature in the header, with a constant-time comparison.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        raise SignatureError("no webhook secret configured", reason=NO_SECRET)
    msg_id, timestamp, signature_header = (_header(headers, n) for n in ("id", "timestamp", "signature"))
    if not msg_id or not timestamp or not signature_header:
        raise SignatureError("missing signature headers", reason=MISSING_HEADERS)
    if len(msg_id) > 100 or not msg_id.isascii() or not msg_id.isprintable():
        raise SignatureError("malformed message id", reason=MISSING_HEADERS)
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("malformed timestamp", reason=MISSING_HEADERS)
    now = time.time() if now is None else now
    age = now - int(timestamp)
    # Stale and future are told apart: a clock running behind or ahead points at a different fix.
    if age > tolerance:
        raise SignatureError("timestamp outside the tolerance window", reason=STALE_TIMESTAMP)
    if -age > tolerance:
        raise SignatureError("timestamp outside the tolerance window", reason=FUTURE_TIMESTAMP)

    candidates = []
    for part in signature_header.split():
        version, _, value = part.partition(",")
        if version != "v1" or not value:
            continue
        try:
            candidates.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not candidates:
        raise SignatureError("no well-formed v1 signature", reason=MISSING_HEADERS)

    for secret in secrets:
        expected = base64.b64decode(sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)[3:])
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return msg_id
    raise SignatureError("no signature matches", reason=BAD_SIGNATURE)
