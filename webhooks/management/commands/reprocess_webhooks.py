from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from webhooks import services
from webhooks.models import WebhookEvent


class Command(BaseCommand):
    help = (
        "Process failed (and optionally ignored) Recurrente webhook events again. "
        "Handlers are idempotent: nothing is applied twice."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="Event ids (default: every failed event)")
        parser.add_argument("--include-ignored", action="store_true", help="Also reprocess ignored events")
        parser.add_argument("--type", dest="event_type", help="Only events of this type, e.g. payment_intent.succeeded")
        parser.add_argument("--now", action="store_true", help="Process here and now instead of through the Celery queue")

    def handle(
        self, *args: Any, ids: list[int], include_ignored: bool, event_type: str | None, now: bool, **options: Any
    ) -> None:
        statuses = [WebhookEvent.Status.FAILED] + ([WebhookEvent.Status.IGNORED] if include_ignored else [])
        events = WebhookEvent.objects.filter(status__in=statuses)
        if ids:
            events = events.filter(pk__in=ids)
        if event_type:
            events = events.filter(event_type=event_type)
        selected = list(events.order_by("received_at").values_list("pk", flat=True))
        if ids and len(selected) < len(set(ids)):
            missing = sorted(set(ids) - set(selected))
            raise CommandError(f"not failed{' or ignored' if include_ignored else ''} (or unknown): {missing}")
        done = services.webhook_events_reprocess(event_ids=selected, include_ignored=include_ignored, run_now=now)
        if now:
            outcome = dict.fromkeys(WebhookEvent.Status.values, 0)
            for status in WebhookEvent.objects.filter(pk__in=done).values_list("status", flat=True):
                outcome[status] += 1
            summary = ", ".join(f"{count} {status}" for status, count in outcome.items() if count)
            self.stdout.write(f"Reprocessed {len(done)} event(s): {summary or 'none'}.")
        else:
            self.stdout.write(f"Queued {len(done)} event(s) for reprocessing.")
