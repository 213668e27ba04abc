"""Laptop mode's webhook race, run in its own process against a SQLite FILE database.

`make run` keeps everything in one SQLite file shared by web, worker and beat; the sandbox sends
both the legacy and the unified event of each payment, so two worker processes apply the same
payment at once. Usage (the caller sets DATABASE_URL=sqlite:///<file> and laptop settings; see
test_sqlite_race.py):

    python -m webhooks.tests.sqlite_race <rounds>

Migrates the empty file, then for each round stores the two events of one payment and processes
them at the same moment on two threads (each its own connection, like two workers). Prints one
JSON line: every outcome and error, the slowest processing time, and what was fulfilled.
"""

import json
import os
import sys
import time
import uuid

import django


def main(rounds: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webmagic.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return race(rounds)


def race(rounds: int) -> dict:
    from checkout.models import Payment
    from checkout.tests.factories import CheckoutSessionFactory
    from sites.models import Site
    from webhooks import services
    from webhooks.models import WebhookEvent
    from webhooks.tests.helpers import payment_event
    from webmagic.models import EmailLog

    outcomes, errors, slowest = [], [], 0.0
    for round_no in range(rounds):
        session = CheckoutSessionFactory(customer_email=f"buyer{round_no}@example.com")
        payment_id = f"pa_sqlite_race_{round_no}"
        event_ids = [
            store(payment_event(name, session=session, payment_id=payment_id))
            for name in ("payment_intent.succeeded.purchase.json", "intent.succeeded.purchase.json")
        ]
        results = run_together([timed(services.webhook_event_process, event_id=event_id) for event_id in event_ids])
        for outcome, seconds, error in results:
            outcomes.append(outcome)
            slowest = max(slowest, seconds)
            if error:
                errors.append(error)

    return {
        "outcomes": outcomes,
        "errors": errors,
        "slowest_seconds": round(slowest, 2),
        "event_statuses": sorted(WebhookEvent.objects.values_list("status", flat=True)),
        "payments": Payment.objects.count(),
        "unflagged_payments": Payment.objects.filter(flag="").count(),
        "owned_sites": Site.objects.filter(status=Site.Status.OWNED, owner__isnull=False).count(),
        "welcome_emails": EmailLog.objects.filter(kind=EmailLog.Kind.WELCOME).count(),
        "receipt_emails": EmailLog.objects.filter(kind=EmailLog.Kind.RECEIPT).count(),
    }


def store(payload: dict) -> int:
    """Store a delivery as intake does, without enqueueing it: the race below is the processing."""
    from webhooks.models import WebhookEvent

    return WebhookEvent.objects.create(
        delivery_id=f"msg_{uuid.uuid4().hex}", event_type=payload["event_type"], object_id=payload["id"],
        live_mode=False, raw_body=json.dumps(payload), payload=payload,
    ).pk


def timed(function, **kwargs):
    """The job for one worker: (outcome, seconds, error text or None). Errors are returned, not
    raised, so the caller sees every one of them."""

    def job():
        started = time.monotonic()
        try:
            return function(**kwargs), time.monotonic() - started, None
        except Exception as exc:
            cause = exc.__cause__ or exc
            return None, time.monotonic() - started, f"{type(exc).__name__}: {exc} (cause: {type(cause).__name__}: {cause})"

    return job


def run_together(jobs):
    from webmagic.tests.concurrency import run_together as start_at_once

    return start_at_once(jobs)


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
