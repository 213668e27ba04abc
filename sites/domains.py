"""Custom domain names: what an owner may claim, and which hostnames are verified right now.

`domain_normalise()` is the one place a typed domain becomes the stored, lower-case ASCII form;
the form and the service both call it. `verified_hosts()` is what the custom-domain middleware
reads on every request for a host that is not ours, so it is cached (briefly, and dropped when a
domain's status changes).
"""

import ipaddress
import logging
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)

TXT_RECORD_PREFIX = "_webmagic-verify"
TXT_VALUE_PREFIX = "webmagic-verify="

VERIFIED_HOSTS_CACHE_KEY = "sites:verified-hosts:v1"
VERIFIED_HOSTS_CACHE_SECONDS = 60

LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Names that never reach the public internet, or that only we may use.
RESERVED_SUFFIXES = ("localhost", "local", "localdomain", "internal", "invalid", "test", "example", "arpa", "onion")

FORMAT_MESSAGE = "Enter a domain name like www.example.com."
WEB_SCHEME = re.compile(r"^https?://", re.IGNORECASE)


def _own_hosts() -> list[str]:
    """Hostnames that are ours: SITE_URL's and the explicit ALLOWED_HOSTS (a leading dot means
    "and its subdomains" there, and does here too)."""
    hosts = [urlsplit(settings.SITE_URL).hostname or ""]
    hosts += [h.lstrip(".").lower() for h in settings.ALLOWED_HOSTS if h and h != "*"]
    return [h for h in hosts if h]


def _host_of_pasted_address(value: str) -> str:
    """Owners paste their address from the browser bar (`https://www.example.com/`): keep the
    host. Only http(s) is taken off; any other scheme, a port or a user@ still reaches the checks
    below and is refused, since it is not clear what was meant."""
    return re.split(r"[/?#]", WEB_SCHEME.sub("", value), maxsplit=1)[0]


def domain_normalise(value: str) -> str:
    """The canonical form of a domain an owner typed, or ValidationError saying what is wrong.

    Strip spaces, an address's http(s):// and path, and the trailing dot, lower-case, IDNA-encode
    (so `bücher.de` is stored as `xn--bcher-kva.de`, the form browsers send in `Host`), then insist
    on a public hostname."""
    domain = _host_of_pasted_address((value or "").strip().lower()).rstrip(".")
    if not domain:
        raise ValidationError("Enter your domain name.", code="required")
    if "/" in domain or ":" in domain or "@" in domain or " " in domain:
        raise ValidationError(FORMAT_MESSAGE, code="invalid")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(FORMAT_MESSAGE, code="invalid") from None
    if len(domain) > 253:
        raise ValidationError("That domain name is too long.", code="invalid")
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        raise ValidationError("Enter a domain name, not an IP address.", code="ip_address")
    labels = domain.split(".")
    if len(labels) < 2 or not all(LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValidationError(FORMAT_MESSAGE, code="invalid")
    if labels[-1] in RESERVED_SUFFIXES:
        raise ValidationError("That domain can't be reached on the internet.", code="reserved")
    for own in _own_hosts():
        if domain == own or domain.endswith("." + own):
            raise ValidationError("That domain belongs to WebMagic. Enter your own domain.", code="ours")
    return domain


def txt_record_name(domain: str) -> str:
    return f"{TXT_RECORD_PREFIX}.{domain}"


# --- Verified hostnames (read by sites.middleware on requests for hosts that are not ours) -----

def _verified_hosts_from_db() -> dict[str, str]:
    from .models import DomainVerificationRecord

    return dict(
        DomainVerificationRecord.objects.filter(status=DomainVerificationRecord.Status.VERIFIED)
        .values_list("domain", "site__slug")
    )


def verified_hosts() -> dict[str, str]:
    """Verified domain -> its site's slug. The site's status is checked per request by the caller:
    suspensions and reactivations happen elsewhere and do not touch this cache."""
    try:
        hosts = cache.get(VERIFIED_HOSTS_CACHE_KEY)
    except Exception:  # a cache outage must not take custom domains down with it
        logger.warning("verified hosts cache unreadable; reading the database", exc_info=True)
        return _verified_hosts_from_db()
    if hosts is None:
        hosts = _verified_hosts_from_db()
        try:
            cache.set(VERIFIED_HOSTS_CACHE_KEY, hosts, VERIFIED_HOSTS_CACHE_SECONDS)
        except Exception:
            logger.warning("verified hosts cache unwritable", exc_info=True)
    return hosts


def verified_hosts_forget() -> None:
    try:
        cache.delete(VERIFIED_HOSTS_CACHE_KEY)
    except Exception:  # the entry expires on its own within VERIFIED_HOSTS_CACHE_SECONDS
        logger.warning("could not drop the verified hosts cache", exc_info=True)
