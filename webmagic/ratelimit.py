"""Rate limits that say what happens when they cannot count (DESIGN: rate limits on the shared cache).

django-ratelimit counts in the cache (RATELIMIT_USE_CACHE). When Redis does not answer, Django's
RedisCache raises redis's ConnectionError/TimeoutError out of its decorator and every limited page
answered 500. Its own RATELIMIT_FAIL_OPEN setting does not help: it only covers a cache that
answers "no count" (memcached's way), not one that raises, and it is one switch for the whole
site. Here each limit chooses:

- `FAIL_OPEN`: count nothing, log a warning and serve the request. For pages where refusing loses
  a buyer (the purchase form, the recovery link) or a customer's own action on their site.
- `FAIL_CLOSED`: answer a 503 page with Retry-After and run nothing else. For sign-in and account
  endpoints, where the limit is what stops password guessing and mail bombing.

Cache errors are caught around the count only, never around the view, so a view never runs twice.
"""

import logging
from functools import wraps

from django.shortcuts import render
from django_ratelimit import ALL
from django_ratelimit.core import is_ratelimited
from django_ratelimit.exceptions import Ratelimited
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

FAIL_OPEN = "open"
FAIL_CLOSED = "closed"

# What Django's RedisCache raises when Redis is down or slow (ConnectionError, TimeoutError, …).
CACHE_ERRORS = (RedisError,)
CACHE_DOWN_RETRY_AFTER_SECONDS = 120
# Set on the request once a count failed: the next stacked limit does not wait on the cache again.
_CACHE_DOWN_ATTRIBUTE = "_ratelimit_cache_down"


def ratelimit(*, key, rate, when_cache_down: str, group=None, method=ALL, unavailable_action: str = "do that"):
    """django-ratelimit's `ratelimit(block=True)` (same counters: same group, key and rate), plus
    `when_cache_down` (FAIL_OPEN or FAIL_CLOSED). `unavailable_action` completes the 503 page's
    "We can't … right now" (e.g. "sign you in")."""
    if when_cache_down not in (FAIL_OPEN, FAIL_CLOSED):
        raise ValueError(f"when_cache_down must be FAIL_OPEN or FAIL_CLOSED, not {when_cache_down!r}")

    def decorator(view):
        name = f"{view.__module__}.{view.__qualname__}"  # logged instead of the path, which may hold a token

        @wraps(view)
        def limited_view(request, *args, **kwargs):
            try:
                if getattr(request, _CACHE_DOWN_ATTRIBUTE, False):
                    raise RedisError("the cache already failed on this request")
                limited = is_ratelimited(
                    request=request, group=group, fn=view, key=key, rate=rate, method=method, increment=True,
                )
            except CACHE_ERRORS as exc:
                setattr(request, _CACHE_DOWN_ATTRIBUTE, True)
                if when_cache_down == FAIL_CLOSED:
                    logger.warning("rate limit on %s cannot count (%s): answering 503", name, type(exc).__name__)
                    return cache_down_response(request, unavailable_action=unavailable_action)
                logger.warning("rate limit on %s cannot count (%s): serving unlimited", name, type(exc).__name__)
                limited = False
            request.limited = limited or getattr(request, "limited", False)
            if limited:
                raise Ratelimited()  # RatelimitMiddleware answers with settings.RATELIMIT_VIEW (429)
            return view(request, *args, **kwargs)

        return limited_view

    return decorator


def cache_down_response(request, *, unavailable_action: str):
    response = render(request, "503.html", {"unavailable_action": unavailable_action}, status=503)
    response["Retry-After"] = str(CACHE_DOWN_RETRY_AFTER_SECONDS)
    # Django logs every 5xx at ERROR, which mails ADMINS once per refused request for as long as
    # the outage lasts. The warning above is the log line; /healthz/ reports the cache to the
    # monitor. Marked as logged the way Django's own log_response does.
    response._has_been_logged = True  # type: ignore[attr-defined]  # Django's private flag, not in the stubs
    return response
