"""A worker SIGKILLed in the middle of an email or of a webhook event loses nothing and does
nothing twice (issue 14): the email is delivered exactly once, the event applied exactly once,
without waiting for a 10-minute staleness rule.

Real processes (webmagic/tests/live_services.py): a private redis-server and the Procfile's worker
on the test database. Brevo and Recurrente are stand-in HTTP servers (stand_ins.py) that hold
their answer to the first request, so the worker is killed while it waits on them:
- `child`: only the pool process dies (the OOM killer, a hard time limit). Celery redelivers its
  task at once (reject on worker lost) and the new attempt takes the dead one's claim over.
- `worker`: the whole worker dies. Its task message comes back only after the broker's visibility
  timeout (an hour), so the sweeps, run by beat, pick the work up once it is past their grace
  (aged here instead of waited for), and a new worker does it."""

import json
import signal
import subprocess
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from checkout.models import CheckoutSession, Subscription
from checkout.tests.factories import CheckoutSessionFactory
from checkout.tests.fixtures import recurrente_fixture
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks.models import WebhookEvent
from webhooks.tests.helpers import subscription_event
from webmagic.emails import email_idempotency_key
from webmagic.models import EmailLog

from .live_services import LiveServices, beat_schedule_replace
from .stand_ins import BrevoStandIn, RecurrenteStandIn, serving

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BUYER = "maria.lopez@example.com"
SU = "su_9xk2p7qv"
CHECKOUT_ID = "ch_r2m9wq8z4kx7t1ce"


@pytest.fixture
def live(tmp_path):
    with LiveServices(tmp_path) as services:
        yield services


def pool_children(worker) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(worker.popen.pid)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def kill(live, worker, env, which: str):
    """SIGKILL the pool process (the worker lives on) or the whole worker (a new one is started)."""
    if which == "child":
        children = pool_children(worker)
        assert children, f"the worker has no pool process\n{live.report()}"
        for pid in children:
            subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(pid)], check=True)
        return worker
    worker.kill()
    return live.worker(env, name="worker-restarted")


def kill_and_wait_for_the_takeover(live, worker, env, which: str, *, stand_in, age_claim, done, what: str):
    """Kill the worker while `stand_in` holds its answer, then wait until `done()`. After a whole
    worker dies, beat runs the sweeps for a new worker, once the dead claim is past the sweep's
    one-minute grace (`age_claim` makes it so instead of waiting)."""
    worker = kill(live, worker, env, which)
    stand_in.release.set()
    alive = (worker,)
    if which == "worker":
        alive = (worker, live.beat(env))
        age_claim()
    live.wait_until(done, timeout=60, alive=alive, what=what)


def enqueue(live, env, code: str):
    """Enqueue through the real broker, from a process of its own (as a web request would)."""
    script = live.django_script("enqueue", code, env)
    live.wait_until(lambda: not script.alive, timeout=30, what="the enqueueing script to finish")
    assert script.returncode == 0, live.report()


@pytest.mark.parametrize("which", ["child", "worker"])
def test_a_worker_killed_while_the_provider_holds_an_email_delivers_it_exactly_once(live, which):
    brevo = BrevoStandIn()
    brevo.hold_next = 1  # Brevo takes the email, then its answer never reaches the worker
    with serving(brevo) as brevo_url:
        beat_schedule_replace({"webmagic.tasks.resend_stuck_emails": 1})
        redis = live.redis()
        env = live.env(redis, BREVO_API_KEY="xkeysib-fault-tests", BREVO_API_URL=f"{brevo_url}/v3/",
                       ANYMAIL_WEBHOOK_SECRET="fault:tests")
        worker = live.worker(env)
        enqueue(live, env, (
            "from webmagic.emails import email_queue\n"
            f"email_queue(kind='receipt', to_email='{BUYER}', context={{'site_name': 'Café Antigua', 'amount': '$495'}})"
        ))
        live.wait_until(brevo.held.is_set, timeout=60, alive=(worker,), what="the worker to be waiting on Brevo")
        log = EmailLog.objects.get()
        assert log.status == EmailLog.Status.SENDING and log.attempts == 1

        kill_and_wait_for_the_takeover(
            live, worker, env, which, stand_in=brevo,
            age_claim=lambda: EmailLog.objects.filter(pk=log.pk).update(updated_at=timezone.now() - timedelta(minutes=2)),
            done=lambda: EmailLog.objects.filter(pk=log.pk, status=EmailLog.Status.SENT).exists(),
            what="the email to be sent by the attempt that took over",
        )
    log.refresh_from_db()
    assert log.attempts == 2 and log.provider_message_id == "<1@smtp-relay.mailin.fr>"
    assert len(brevo.requests) == 2  # the dead attempt and the one that took over...
    assert {body["headers"]["idempotencyKey"] for _, _, body in brevo.requests} == {email_idempotency_key(log)}
    assert len(brevo.delivered) == 1  # ...and the buyer got one email
    assert brevo.delivered[0]["to"] == [{"email": BUYER}] and brevo.delivered[0]["subject"] == "Your receipt: Café Antigua — $495"


@pytest.mark.parametrize("which", ["child", "worker"])
def test_a_worker_killed_while_recurrente_holds_an_event_applies_it_exactly_once(live, which):
    owner = CustomerFactory(email=BUYER)
    site = SiteFactory(status=Site.Status.OWNED, owner=owner)
    CheckoutSessionFactory(
        site=site, kind=CheckoutSession.Kind.SUBSCRIPTION, amount=Decimal("95.00"), user=owner,
        customer_email=owner.email, recurrente_checkout_id=CHECKOUT_ID,
    )
    subscription = recurrente_fixture("api/get_subscription.response.json")
    subscription["checkout"]["id"] = CHECKOUT_ID
    recurrente = RecurrenteStandIn({SU: subscription})
    recurrente.hold_next = 1  # subscription.create names no checkout: the handler asks Recurrente
    payload = subscription_event("subscription.create.json")
    event = WebhookEvent.objects.create(
        delivery_id="msg_fault_kill", event_type=payload["event_type"], object_id=SU, live_mode=payload.get("live_mode"),
        raw_body=json.dumps(payload), payload=payload,
    )
    with serving(recurrente) as recurrente_url:
        beat_schedule_replace({"webhooks.tasks.sweep_unprocessed_webhooks": 1})
        redis = live.redis()
        env = live.env(redis, RECURRENTE_API_URL=recurrente_url)
        worker = live.worker(env)
        enqueue(live, env, f"from webhooks.tasks import process_webhook_event\nprocess_webhook_event.delay({event.pk})")
        live.wait_until(recurrente.held.is_set, timeout=60, alive=(worker,), what="the worker to be waiting on Recurrente")
        event.refresh_from_db()
        assert event.status == WebhookEvent.Status.PROCESSING and event.attempts == 1

        kill_and_wait_for_the_takeover(
            live, worker, env, which, stand_in=recurrente,
            age_claim=lambda: WebhookEvent.objects.filter(pk=event.pk).update(
                processing_started_at=timezone.now() - timedelta(minutes=2)
            ),
            done=lambda: WebhookEvent.objects.filter(pk=event.pk, status=WebhookEvent.Status.PROCESSED).exists(),
            what="the event to be processed by the attempt that took over",
        )
    event.refresh_from_db()
    assert event.attempts == 2 and event.error == ""
    [mirror] = Subscription.objects.all()
    assert mirror.recurrente_subscription_id == SU and mirror.status == Subscription.Status.ACTIVE
    assert Site.objects.get(pk=site.pk).status == Site.Status.ACTIVE
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_ACTIVATED).count() == 1
    assert [path for _, path, _ in recurrente.requests] == [f"/subscriptions/{SU}"] * 2
