"""Run one reconcile pass now and print what it found (the same pass the beat runs every 5 minutes)."""

from django.core.management.base import BaseCommand

from checkout.services.reconcile import reconcile_pass


class Command(BaseCommand):
    help = "Ask Recurrente about open checkouts, live subscriptions and pending refunds now, and apply what webhooks missed."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=None, help="At most this many checkouts (default: the pass's own limit)")

    def handle(self, *args, batch=None, **options):
        kwargs = {"checkout_batch": batch} if batch else {}
        report = reconcile_pass(**kwargs)
        self.stdout.write(f"Reconcile run {report.run.pk}:")
        for line in report.lines():
            self.stdout.write(f"  {line}")
        if report.run.stopped_early:
            self.stderr.write(self.style.WARNING(f"Stopped early: {report.run.stopped_early}"))
