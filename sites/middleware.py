"""Serve a live site on its owner's verified custom domain (DESIGN §9).

This middleware is first in MIDDLEWARE because every later one may call `request.get_host()`,
which rejects any Host not in ALLOWED_HOSTS: SecurityMiddleware does for its HTTPS redirect,
CommonMiddleware always, CSRF on POST. So it decides from the raw `Host` header alone whether
the request is for a verified custom domain:

- a host that is ours (SITE_URL / ALLOWED_HOSTS) or unknown goes on through the normal stack,
  where ALLOWED_HOSTS still applies, so arbitrary Host values are still refused with 400;
- a verified domain whose site is active (or suspended: visitors see "temporarily unavailable")
  gets exactly two pages, the live page at `/` and its sandboxed document, and our static files.
  Nothing else of the application (portal, admin, checkout) answers on a customer's domain.

Those responses bypass the rest of the stack, so they are passed through the same response
header middleware as every other page (HSTS, nosniff, referrer policy, our CSP, X-Frame-Options),
and the HTTPS redirect is done here, to the verified host, never to a value we did not check.
"""

import logging

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponseNotFound, HttpResponsePermanentRedirect
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse

from webmagic.middleware import SecurityHeadersMiddleware

from . import selectors, views
from .domains import verified_hosts
from .models import Site

logger = logging.getLogger(__name__)

SERVED_STATUSES = (Site.Status.ACTIVE, Site.Status.SUSPENDED)


def _raw_host(request) -> str:
    """The Host header without port or trailing dot, lower-cased; '' if it is not a valid host."""
    domain, _port = split_domain_port(request.META.get("HTTP_HOST", ""))
    return domain


class CustomDomainMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        # Header-only middleware around our two views. SecurityMiddleware's request half only
        # redirects to HTTPS, which __call__ has already done for these requests.
        self.serve_with_headers = SecurityMiddleware(SecurityHeadersMiddleware(XFrameOptionsMiddleware(self._serve)))

    def __call__(self, request):
        host = _raw_host(request)
        # Our own hosts never cost a cache lookup; "*" would match everything, so it is not "ours".
        own = [h for h in settings.ALLOWED_HOSTS if h != "*"]
        if not host or validate_host(host, own):
            return self.get_response(request)
        slug = verified_hosts().get(host)
        if slug is None:
            return self.get_response(request)  # ALLOWED_HOSTS decides (400 for strangers)
        if request.path_info.startswith(settings.STATIC_URL):
            # The live page's stylesheet: WhiteNoise answers before anything checks the host.
            return self.get_response(request)
        site = selectors.site_for_page(slug=slug)
        if site is None or site.status not in SERVED_STATUSES:
            return self.get_response(request)
        if getattr(settings, "SECURE_SSL_REDIRECT", False) and not request.is_secure():
            return HttpResponsePermanentRedirect(f"https://{host}{request.get_full_path()}")
        request.custom_domain_site = site
        return self.serve_with_headers(request)

    def _serve(self, request):
        site = request.custom_domain_site
        # Our session cookie is never sent to a customer's domain: every visitor is anonymous.
        request.user = AnonymousUser()
        path = request.path_info
        if path == "/":
            response = views.site_page(request, slug=site.slug)
        elif path in ("/raw/", reverse("sites:document", args=[site.slug])):
            response = views.site_document(request, slug=site.slug)
        else:
            logger.debug("custom domain for site %s: no page at %s", site.pk, path)
            response = HttpResponseNotFound("Not found", content_type="text/plain; charset=utf-8")
        if settings.SECURE_HSTS_SECONDS and request.is_secure():
            # Set here so SecurityMiddleware keeps it: our includeSubDomains/preload are decisions
            # for our own domain, not for the customer's other subdomains.
            response["Strict-Transport-Security"] = f"max-age={settings.SECURE_HSTS_SECONDS}"
        return response
