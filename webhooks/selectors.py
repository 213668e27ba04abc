"""Reads about webhook intake shared by alerts and the payments health page."""

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db.models import Q, Sum

from .models import WebhookEvent, WebhookRejection


def rejections_by_reason(*, since: datetime) -> dict[str, int]:
    """Refused deliveries per reason in the minute buckets starting at or after `since` (one
    aggregate query). Reasons with none are absent."""
    rows = (
        WebhookRejection.objects.filter(bucket__gte=since)
        .order_by()
        .values("reason")
        .annotate(total=Sum("count"))
        .values_list("reason", "total")
    )
    return dict(rows)


def rejections_total(*, since: datetime, reasons: Iterable[str] | None = None) -> int:
    """Refused deliveries (of the given reasons, or all) in the minute buckets starting at or
    after `since`."""
    rejections = WebhookRejection.objects.filter(bucket__gte=since)
    if reasons is not None:
        rejections = rejections.filter(reason__in=list(reasons))
    return rejections.aggregate(total=Sum("count"))["total"] or 0


def last_accepted_delivery() -> WebhookEvent | None:
    """The newest stored delivery meant for this deployment: its live_mode matches
    RECURRENTE_LIVE_MODE or is unknown. Other-mode events are stored too, but they prove only
    that the secret works, not that this deployment gets its own payments. The bodies are
    deferred (they can be large and callers want the time and type)."""
    mode = Q(live_mode__isnull=True) | Q(live_mode=settings.RECURRENTE_LIVE_MODE)
    return WebhookEvent.objects.filter(mode).defer("raw_body", "payload").order_by("-received_at", "-pk").first()
