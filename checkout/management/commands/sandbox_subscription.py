"""Sandbox only: push a hosting subscription through a life-cycle event, as Recurrente would.

    manage.py sandbox_subscription <su_…|site slug> <past_due|pause|unpause|reactivate|cancel>

The event is a signed delivery to our own webhook URL, sent by the worker (or at once with
CELERY_TASK_ALWAYS_EAGER), exactly like the staff buttons on the sandbox checkout page.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from checkout import sandbox
from checkout.models import SandboxCheckout, Subscription


class Command(BaseCommand):
    help = "Sandbox only: send a subscription event (past_due, pause, unpause, reactivate, cancel) for a sandbox subscription."

    def add_arguments(self, parser):
        parser.add_argument("target", help="A sandbox subscription id (su_…) or the slug of a site with one")
        parser.add_argument("event", help="past_due, pause, unpause, reactivate or cancel (the subscription. prefix is optional)")

    def handle(self, *args, target: str, event: str, **options):
        if not settings.RECURRENTE_SANDBOX:
            raise CommandError("Sandbox mode is off (RECURRENTE_SECRET_KEY is set): real subscriptions are changed at Recurrente.")
        event_type = event if event.startswith("subscription.") else f"subscription.{event}"
        if event_type not in sandbox.SUBSCRIPTION_EVENTS:
            raise CommandError(f"Unknown event {event!r}; choose one of: {', '.join(sorted(sandbox.SUBSCRIPTION_EVENTS))}")
        subscription_id = target
        if not target.startswith("su_"):
            subscription = Subscription.objects.filter(site__slug=target).order_by("-created_at").first()
            if subscription is None:
                raise CommandError(f"Site {target!r} has no hosting subscription yet (start one from the portal first).")
            subscription_id = subscription.recurrente_subscription_id
        checkout = SandboxCheckout.objects.filter(subscription_id=subscription_id).first()
        if checkout is None:
            raise CommandError(f"{subscription_id} is not a sandbox subscription.")
        sandbox.sandbox_subscription_event(checkout_id=checkout.pk, event_type=event_type)
        self.stdout.write(f"{event_type} sent for {subscription_id} (sandbox checkout {checkout.pk}).")
