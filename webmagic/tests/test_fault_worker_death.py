"""A dead worker shows on /healthz/ (issue 14): webhook processing and every email stop with it.

Real processes (webmagic/tests/live_services.py): a private redis-server, the Procfile's worker and
beat stamping the heartbeat every second; the worker is SIGKILLed and later started again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from webmagic.alerts import HEARTBEAT_STALE_AFTER
from webmagic.models import Heartbeat, StaffAlert

from .live_services import LiveServices, beat_schedule_replace

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live(tmp_path):
    with LiveServices(tmp_path) as services:
        yield services


def healthz(client) -> tuple[int, dict]:
    response = client.get("/healthz/")
    return response.status_code, response.json()


def test_healthz_reports_a_killed_worker_stale_and_recovers_when_a_worker_runs_again(live, client, settings):
    beat_schedule_replace({"webmagic.tasks.heartbeat": 1})
    redis = live.redis()
    settings.CELERY_BROKER_URL = redis.url(0)  # healthz asks the broker the processes use
    env = live.env(redis)
    worker, beat = live.worker(env), live.beat(env)
    live.wait_until(lambda: healthz(client)[0] == 200, timeout=60, alive=(worker, beat), what="healthz to answer 200")

    worker.kill()
    # Ten minutes pass (the stamp is aged instead) with no worker: beat's heartbeats pile up unrun.
    Heartbeat.objects.filter(name="worker").update(beat_at=timezone.now() - HEARTBEAT_STALE_AFTER - timedelta(seconds=1))
    live.wait_until(lambda: redis.client().llen("celery") >= 2, timeout=30, alive=(beat,),
                    what="beat's heartbeats to wait in the queue")
    status, body = healthz(client)
    assert (status, body["worker"], body["broker"], body["database"]) == (503, "stale", "ok", "ok")
    assert StaffAlert.objects.filter(kind="worker_heartbeat").count() == 1  # staff are told (once an hour)

    restarted = live.worker(env)
    status, body = live.wait_until(lambda: (answer := healthz(client))[0] == 200 and answer, timeout=60,
                                   alive=(restarted, beat), what="healthz to recover with a worker running again")
    assert body["worker"] == "ok"
