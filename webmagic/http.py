"""Client IP behind a known number of trusted proxies."""

from django.conf import settings


def client_ip(request) -> str:
    """The address of the client as seen by our outermost trusted proxy.

    With N trusted proxies, each appends the address it received from, so the client's address is
    the N-th value from the right of X-Forwarded-For. Values further left are client-supplied and
    can be forged, so they are never used.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "") or "0.0.0.0"  # noqa: S104 (a placeholder address, not a bind)
