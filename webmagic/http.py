"""Client IP behind a known number of trusted proxies; what a failed outgoing request tells us."""

import ipaddress

import requests
from django.conf import settings
from urllib3.exceptions import NewConnectionError


def _parse_ip(value: str) -> str | None:
    """An IP address from a header value ("1.2.3.4", "1.2.3.4:5678", "[::1]:80"), or None."""
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request) -> str:
    """The address of the client as seen by our outermost trusted proxy.

    With N trusted proxies, each appends the address it received from, so the client's address is
    the N-th value from the right of X-Forwarded-For. Values further left are client-supplied and
    can be forged, so they are never used; a value that is not an IP address is ignored.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            parsed = _parse_ip(forwarded[-proxies])
            if parsed:
                return parsed
    return _parse_ip(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"  # noqa: S104 (a placeholder address, not a bind)


def see_other(to, *args, **kwargs):
    """A redirect answered with 303 (like `redirect()`: a URL or a view name with arguments), so
    the browser follows with GET and a refresh never posts the form again."""
    from django.shortcuts import redirect

    response = redirect(to, *args, **kwargs)
    response.status_code = 303
    return response


def request_never_sent(exc: requests.RequestException) -> bool:
    """True when an outgoing request certainly never left: connecting timed out, was refused, or
    the name did not resolve (urllib3 never opened the connection). A read timeout or a connection
    dropped after sending may have been acted on by the other side."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)
    return False
