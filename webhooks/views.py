import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import services

logger = logging.getLogger(__name__)


# The only CSRF-exempt view: Recurrente cannot hold our CSRF token; the Svix signature on the
# raw body is what authenticates every delivery.
@csrf_exempt
@require_POST
def recurrente(request: HttpRequest) -> JsonResponse:
    try:
        body = _body_read(request)
    except services.IntakeRejected as exc:
        # Refused before the service saw it, so counted here (the service counts its own).
        services.webhook_rejection_record(reason=exc.reason)
        return _refuse(request, exc)
    try:
        result = services.webhook_delivery_accept(headers=services.webhook_signature_headers(request.headers), body=body)
    except services.IntakeRejected as exc:
        return _refuse(request, exc)
    except services.IntakeUnavailable:
        return JsonResponse({"error": "temporarily unavailable"}, status=503)
    return JsonResponse({"ok": True, "duplicate": not result.created})


def _body_read(request: HttpRequest) -> bytes:
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise services.IntakeRejected("bad Content-Length", reason=services.Reason.MALFORMED_BODY) from None
    if declared > limit:
        # Refuse before reading: an oversized body is never pulled into memory.
        raise services.IntakeRejected("body too large", reason=services.Reason.OVERSIZED_BODY, status=413)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise services.IntakeRejected("body too large", reason=services.Reason.OVERSIZED_BODY, status=413)
    return body


def _refuse(request: HttpRequest, exc: services.IntakeRejected) -> JsonResponse:
    raw_id = request.headers.get("svix-id") or request.headers.get("webhook-id") or "-"
    # The id is attacker-controlled until verified: keep log lines single and printable.
    delivery_id = "".join(c for c in raw_id[:100] if c.isascii() and c.isprintable()) or "-"
    logger.warning("webhook delivery %s refused (%s, %s): %s", delivery_id, exc.status, exc.reason, exc.message)
    return JsonResponse({"error": exc.message, "reason": exc.reason}, status=exc.status)
