"""Redis restarts never kill the worker or beat, and lose no work (issue 14).

Real processes (webmagic/tests/live_services.py): a private redis-server as broker, the worker and
beat started as the Procfile starts them, and a process enqueueing emails as web requests do
(`email_queue` in a transaction, published after commit). Each outage is taken while the worker
holds unacknowledged tasks, the condition that used to end it with
`AttributeError: 'NoneType' object has no attribute 'hostname'` (see webmagic/broker.py)."""

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from webmagic.models import EmailLog, Heartbeat
from webmagic.tasks import STUCK_EMAIL_AGE

from .live_services import LiveServices, beat_schedule_replace

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OUTAGES_SECONDS = (1, 5, 15)
# The worker retries the broker 2, 4, 6, … s apart: after the 15 s outage it is back within ~10 s.
RECOVERY_TIMEOUT = 45
SUBJECT = "fault test email"
# A web-like process: one email every 0.2 s, each queued in a transaction and published after commit
# (robust: a broker that is down fails the publish, not the committed work), until STOP_FILE exists.
ENQUEUE_EMAILS = """
import os, time
from pathlib import Path
from django.db import transaction
from webmagic.emails import email_queue
n = 0
while not Path(os.environ["STOP_FILE"]).exists():
    with transaction.atomic():
        email_queue(kind="staff_alert", to_email="staff@webmagic.test", context={"subject": f"{os.environ['SUBJECT']} {n}", "body": "x"})
    n += 1
    time.sleep(0.2)
print("enqueued", n, flush=True)
"""


@pytest.fixture
def live(tmp_path):
    with LiveServices(tmp_path) as services:
        yield services


def heartbeat_at():
    return Heartbeat.objects.filter(name="worker").values_list("beat_at", flat=True).first()


def fresh_heartbeat_since(moment):
    return lambda: (beat_at := heartbeat_at()) is not None and beat_at > moment


def holds_a_heartbeat_task(redis) -> bool:
    """A heartbeat task is delivered to the worker and not acknowledged (kombu keeps those in the
    "unacked" hash until the ack)."""
    return any(b'"webmagic.tasks.heartbeat"' in message for message in redis.client().hvals("unacked"))


def emails(status=None):
    queryset = EmailLog.objects.filter(subject__startswith=SUBJECT)
    return queryset if status is None else queryset.filter(status=status)


def sent_email_subjects(live) -> list[str]:
    """Every email the worker's file backend wrote (one file per send)."""
    return [line.removeprefix("Subject: ") for path in live.email_dir.glob("*.log")
            for line in path.read_text().splitlines() if line.startswith(f"Subject: {SUBJECT}")]


def test_worker_and_beat_ride_out_redis_restarts_and_no_email_is_lost(live, tmp_path):
    # Beat stamps the heartbeat every second and runs the stuck-email sweep every 2 seconds.
    beat_schedule_replace({"webmagic.tasks.heartbeat": 1, "webmagic.tasks.resend_stuck_emails": 2})
    Heartbeat.objects.create(name="worker", beat_at=timezone.now() - timedelta(hours=1))
    redis = live.redis()
    env = live.env(redis)
    worker, beat = live.worker(env), live.beat(env)
    started_at = timezone.now()
    live.wait_until(fresh_heartbeat_since(started_at), timeout=60, what="the first heartbeat from beat through the worker")
    stop_file = tmp_path / "stop-enqueueing"
    enqueuer = live.django_script("enqueuer", ENQUEUE_EMAILS, {**env, "STOP_FILE": str(stop_file), "SUBJECT": SUBJECT})
    live.wait_until(lambda: emails(EmailLog.Status.SENT).exists(), timeout=30, what="the first email sent")

    for seconds in OUTAGES_SECONDS:
        # Hold the heartbeat row: the worker's heartbeat tasks block on it, unacknowledged.
        with transaction.atomic():
            Heartbeat.objects.select_for_update().get(name="worker")
            live.wait_until(lambda: holds_a_heartbeat_task(redis), timeout=20, what="the worker to hold a heartbeat task")
            redis.stop()
        # The held tasks finish while Redis is down; their acknowledgements cannot reach it.
        time.sleep(seconds)
        redis.start()
        restarted_at = timezone.now()
        live.wait_until(fresh_heartbeat_since(restarted_at), timeout=RECOVERY_TIMEOUT, alive=(worker, beat, enqueuer),
                        what=f"a heartbeat sent and run after the {seconds} s outage")

    stop_file.touch()
    live.wait_until(lambda: not enqueuer.alive, timeout=15, what="the enqueuer to finish")
    assert "Error calling" in enqueuer.log()  # some publishes failed during the outages …
    queued = emails(EmailLog.Status.QUEUED)
    assert queued.exists()  # … and those emails are still waiting
    # The sweep re-drives queued emails once they are STUCK_EMAIL_AGE old: age them instead of waiting.
    queued.update(updated_at=timezone.now() - STUCK_EMAIL_AGE - timedelta(minutes=1))
    live.wait_until(lambda: not emails().exclude(status=EmailLog.Status.SENT).exists(), timeout=60,
                    what="every email enqueued during the outages to be sent by the sweep")

    total = emails().count()
    assert total > 50
    subjects = sent_email_subjects(live)
    assert len(subjects) == total and len(set(subjects)) == total  # each email sent exactly once
    live.assert_alive(worker, beat)
    assert "Unrecoverable error" not in worker.log()
    assert "Error on restarting" not in worker.log()  # every part of the worker reconnected cleanly
    assert beat.log().count("Sending due task") > 0 and "Couldn't apply scheduled task" in beat.log()


ENQUEUE_ONE_EMAIL = """
from django.db import transaction
from webmagic.emails import email_queue
with transaction.atomic():
    email_queue(kind="staff_alert", to_email="staff@webmagic.test", context={"subject": "fault test: Redis hangs", "body": "x"})
print("request done", flush=True)
"""


def test_an_enqueue_gives_up_on_a_redis_that_hangs_and_the_email_waits_for_the_sweep(live):
    """A web request enqueueing while Redis accepts connections but never answers (SIGSTOPped)
    fails the publish within the socket timeouts instead of hanging until gunicorn kills it."""
    redis = live.redis()
    redis.pause()
    request = live.django_script("request", ENQUEUE_ONE_EMAIL, live.env(redis))
    live.wait_until(lambda: not request.alive, timeout=60, what="the enqueue to give up on the hung Redis")
    assert request.returncode == 0 and "request done" in request.log()
    assert "Error calling" in request.log()  # the publish failed, logged; the request went on
    assert EmailLog.objects.get(subject="fault test: Redis hangs").status == EmailLog.Status.QUEUED
