from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from webmagic.models import Heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def worker_alive():
    """A running worker stamps its heartbeat every minute."""
    return Heartbeat.objects.create(name="worker", beat_at=timezone.now())


def test_healthz_ok_when_everything_answers(client):
    response = client.get("/healthz/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok", "broker": "ok", "worker": "ok"}


@pytest.mark.parametrize(("minutes_ago", "status", "worker"), [(9, 200, "ok"), (11, 503, "stale"), (None, 503, "never")])
def test_healthz_reports_the_worker_heartbeat(client, worker_alive, minutes_ago, status, worker):
    if minutes_ago is None:
        worker_alive.delete()
    else:
        Heartbeat.objects.filter(pk=worker_alive.pk).update(beat_at=timezone.now() - timedelta(minutes=minutes_ago))
    response = client.get("/healthz/")
    assert response.status_code == status
    assert response.json()["worker"] == worker
    assert response.json()["status"] == ("ok" if status == 200 else "error")


def test_healthz_503_when_the_database_is_down(client, monkeypatch):
    from django.db import connection

    def refuse():
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/healthz/")
    assert response.status_code == 503
    assert response.json()["database"] == "error"
    assert response.json()["cache"] == "ok"


def test_healthz_503_when_the_cache_is_down(client):
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=caches):
        response = client.get("/healthz/")
    assert response.status_code == 503
    assert response.json()["cache"] == "error"
    assert response.json()["database"] == "ok"


def test_healthz_503_when_the_broker_is_down(client):
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        response = client.get("/healthz/")
    assert response.status_code == 503
    assert response.json()["broker"] == "error"


def test_healthz_is_get_only(client):
    assert client.post("/healthz/").status_code == 405


def test_livez_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/livez/")
    assert response.status_code == 200 and response.content == b"ok"
