import logging

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import services

logger = logging.getLogger(__name__)


# The only CSRF-exempt view: Recurrente cannot hold our CSRF token; the Svix signature on the
# raw body is what authenticates every delivery.
@csrf_exempt
@require_POST
def recurrente(request):
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _refuse(request, 400, "bad Content-Length")
    if declared > limit:
        # Refuse before reading: an oversized body is never pulled into memory.
        return _refuse(request, 413, "body too large")
    body = request.read(limit + 1)
    if len(body) > limit:
        return _refuse(request, 413, "body too large")

    try:
        result = services.webhook_delivery_accept(headers=services.webhook_signature_headers(request.headers), body=body)
    except services.IntakeRejected as exc:
        return _refuse(request, exc.status, exc.reason)
    except services.IntakeUnavailable:
        return JsonResponse({"error": "temporarily unavailable"}, status=503)
    return JsonResponse({"ok": True, "duplicate": not result.created})


def _refuse(request, status: int, reason: str) -> JsonResponse:
    raw_id = request.headers.get("svix-id") or request.headers.get("webhook-id") or "-"
    # The id is attacker-controlled until verified: keep log lines single and printable.
    delivery_id = "".join(c for c in raw_id[:100] if c.isascii() and c.isprintable()) or "-"
    logger.warning("webhook delivery %s refused (%s): %s", delivery_id, status, reason)
    return JsonResponse({"error": reason}, status=status)
