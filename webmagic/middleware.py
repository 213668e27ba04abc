"""Response headers Django's SecurityMiddleware does not set."""

from urllib.parse import urlsplit

from django.conf import settings


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def content_security_policy() -> str:
    # form-action also governs where a form's redirect may go: the purchase form answers 303 to
    # Recurrente's hosted checkout (or, in sandbox mode, to SITE_URL's sandbox page).
    form_targets = " ".join(sorted({o for o in ("'self'", settings.RECURRENTE_CHECKOUT_ORIGIN, _origin(settings.SITE_URL)) if o}))
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "frame-ancestors 'none'",
        f"form-action {form_targets}",
        "base-uri 'none'",
        "object-src 'none'",
    ])


class SecurityHeadersMiddleware:
    """A strict Content-Security-Policy (no inline script or style anywhere on our pages) and a
    Permissions-Policy. Views that set their own CSP (the sandboxed site documents) keep it."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.csp = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.csp)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        return response
