import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sites.selectors import demo_sites_for_home

logger = logging.getLogger(__name__)


@require_GET
def home(request):
    # Preview links are shared one by one; only a laptop (DEBUG) lists them for convenience.
    sites = demo_sites_for_home() if settings.DEBUG else []
    return render(request, "home.html", {"sites": sites})


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


HEALTH_CHECKS = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}


@never_cache
@require_GET
def livez(request):
    """Liveness: the process answers. Touches nothing (healthz checks the dependencies)."""
    return HttpResponse("ok", content_type="text/plain")


@never_cache
@require_GET
def healthz(request):
    """200 when every dependency answers, 503 naming the ones that do not (no error details)."""
    results = {}
    for name, check in HEALTH_CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:
            logger.exception("healthz: %s check failed", name)
            results[name] = "error"
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse({"status": "ok" if healthy else "error", **results}, status=200 if healthy else 503)


RETRY_AFTER_SECONDS = 60


def ratelimited(request, exception):
    """429 with a page a person can act on, and Retry-After for clients that honour it."""
    response = render(request, "429.html", status=429)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
