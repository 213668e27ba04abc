"""Client IP behind a known number of trusted proxies; what a failed outgoing request tells us; the
per-thread HTTP session for outgoing calls."""

import http.cookiejar
import ipaddress
import os
import threading

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


_per_thread = threading.local()


def thread_session() -> requests.Session:
    """This thread's `requests.Session` for outgoing HTTP calls, created on first use.

    A Session keeps its connections open, so consecutive calls from one worker thread to the same
    service reuse the connection instead of a new TCP and TLS handshake each time. One per thread,
    because a Session is not safe to share between threads (gunicorn's threads, Celery's pool).
    A Session sets no timeout and follows redirects by default: callers pass `timeout=` and
    `allow_redirects=` on every call. It keeps no cookies: one session serves unrelated calls
    (different customers, different alerts), and nothing from one answer may ride along on the next.
    """
    session = getattr(_per_thread, "session", None)
    if session is None:
        session = requests.Session()
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        _per_thread.session = session
    return session


def _forget_sessions_after_fork() -> None:
    """A forked child (a Celery pool process) must open its own connections: sharing the parent's
    sockets would interleave two processes' requests and answers on one connection."""
    global _per_thread
    _per_thread = threading.local()


os.register_at_fork(after_in_child=_forget_sessions_after_fork)
