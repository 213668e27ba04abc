import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    cache.set("healthz", "ok", 10)
    if cache.get("healthz") != "ok":
        raise RuntimeError("cache did not return the value just written")


def _check_broker() -> None:
    from webmagic.celery import app

    with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check_worker() -> str:
    from .alerts import heartbeat_status

    return heartbeat_status()


# Each check raises when its dependency does not answer, or returns a state other than "ok".
HEALTH_CHECKS = {"database": _check_database, "cache": _check_cache, "broker": _check_broker, "worker": _check_worker}


@never_cache
@require_GET
def livez(request):
    """Liveness: the process answers. Touches nothing (healthz checks the dependencies)."""
    return HttpResponse("ok", content_type="text/plain")


@never_cache
@require_GET
def healthz(request):
    """200 when every dependency answers and the worker heartbeat is fresh, 503 naming the ones
    that do not (no error details). `worker` is "ok", "stale" (over 10 minutes) or "never"."""
    results = {}
    for name, check in HEALTH_CHECKS.items():
        try:
            results[name] = check() or "ok"
        except Exception:
            logger.exception("healthz: %s check failed", name)
            results[name] = "error"
    if results["worker"] in ("stale", "never"):
        _alert_stale_worker()
    healthy = all(value == "ok" for value in results.values())
    response = JsonResponse({"status": "ok" if healthy else "error", **results}, status=200 if healthy else 503)
    if not healthy:
        logger.warning("healthz: unhealthy %s", ", ".join(f"{name}={value}" for name, value in results.items() if value != "ok"))
        # Django logs every 5xx at ERROR, which mails ADMINS on each poll (every minute while the
        # worker is down). The monitor reacts to the 503 itself, and staff hear once an hour
        # through the alerts above: mark the response logged (as Django's own log_response does).
        response._has_been_logged = True  # type: ignore[attr-defined]  # Django's private flag, not in the stubs
    return response


def _alert_stale_worker() -> None:
    """An external monitor polls healthz, so a stale heartbeat is alerted from here, synchronously:
    the queue that would carry the alert email is the thing that is stuck. At most once an hour."""
    from .alerts import alert_heartbeat_raise

    try:
        alert_heartbeat_raise()
    except Exception:  # alerting must never turn the health answer into a 500
        logger.exception("healthz: the stale-worker alert could not be raised")


RETRY_AFTER_SECONDS = 60


def ratelimited(request, exception):
    """429 with a page a person can act on, and Retry-After for clients that honour it."""
    response = render(request, "429.html", status=429)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@require_GET
def favicon(request):
    """Browsers (and the admin, whose pages link no icon) ask for /favicon.ico: send them to ours.
    A temporary redirect, since the static file's hashed name changes with each deploy."""
    return redirect(static("img/favicon.svg"))
