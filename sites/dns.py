"""TXT record lookups for custom domain verification.

Callers use `lookup_txt()`, which calls the function named by the `SITES_DNS_TXT_RESOLVER` setting
(default: `txt_records` below, real DNS through dnspython). Tests point that setting at a fake, so
the test suite never touches the network.
"""

import logging

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

DEFAULT_RESOLVER = "sites.dns.txt_records"
# One lookup may not hold a beat task for long: a tick checks many domains one after another.
LOOKUP_LIFETIME_SECONDS = 3.0


class DnsLookupError(Exception):
    """The answer is unknown (timeout, server failure): not evidence that the record is missing."""


def txt_records(name: str) -> list[str]:
    """Every TXT string published at `name` (the strings of one record joined, as DNS intends).
    A name that does not exist, or has no TXT records, answers []; anything else that stops us
    from getting an answer raises DnsLookupError."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.lifetime = LOOKUP_LIFETIME_SECONDS
    resolver.timeout = LOOKUP_LIFETIME_SECONDS
    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise DnsLookupError(f"{type(exc).__name__}: {exc}"[:200]) from exc
    return [b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in answer]


def lookup_txt(name: str) -> list[str]:
    resolver = import_string(getattr(settings, "SITES_DNS_TXT_RESOLVER", DEFAULT_RESOLVER))
    return resolver(name)
