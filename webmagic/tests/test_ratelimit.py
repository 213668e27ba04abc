"""webmagic.ratelimit: django-ratelimit's counters, with a choice of what happens when the cache is down."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone
from django_ratelimit.exceptions import Ratelimited
from freezegun import freeze_time
from redis.exceptions import ConnectionError as RedisConnectionError

from webmagic import ratelimit as ratelimit_module
from webmagic.ratelimit import FAIL_CLOSED, FAIL_OPEN, ratelimit
from webmagic.tests.outage import cache_unreachable


@pytest.fixture
def count_attempts(monkeypatch):
    """A spy on the real count: how many times the cache was asked."""
    attempts = []
    real = ratelimit_module.is_ratelimited

    def spy(**kwargs):
        attempts.append(kwargs["rate"])
        return real(**kwargs)

    monkeypatch.setattr(ratelimit_module, "is_ratelimited", spy)
    return attempts


def stacked(when_cache_down):
    @ratelimit(key="ip", rate="10/m", method="POST", when_cache_down=when_cache_down)
    @ratelimit(key="ip", rate="60/h", method="POST", when_cache_down=when_cache_down)
    def view(request):
        view.calls += 1
        return HttpResponse("ok")

    view.calls = 0
    return view


def test_stacked_limits_ask_a_dead_cache_once_per_request(settings, count_attempts):
    cache_unreachable(settings)
    view = stacked(FAIL_OPEN)
    assert view(RequestFactory().post("/x")).status_code == 200
    assert count_attempts == ["10/m"] and view.calls == 1  # the inner limit did not wait on the cache again
    closed = stacked(FAIL_CLOSED)
    assert closed(RequestFactory().post("/x")).status_code == 503 and closed.calls == 0


def test_with_the_cache_up_every_limit_counts(count_attempts):
    view = stacked(FAIL_OPEN)
    statuses = []
    with freeze_time(timezone.now()):  # one rate-limit window
        for _ in range(11):
            try:
                statuses.append(view(RequestFactory().post("/x", REMOTE_ADDR="10.8.0.1")).status_code)
            except Ratelimited:  # RatelimitMiddleware turns it into the 429 page
                statuses.append(429)
    assert statuses == [200] * 10 + [429] and view.calls == 10
    assert count_attempts[:2] == ["10/m", "60/h"]


def test_a_cache_error_inside_the_view_is_not_mistaken_for_the_limit(settings):
    """Only the count is guarded: the view is never run twice nor its own failure hidden."""
    calls = []

    @ratelimit(key="ip", rate="10/m", method="POST", when_cache_down=FAIL_OPEN)
    def view(request):
        calls.append(1)
        raise RedisConnectionError("the view's own cache call")

    with pytest.raises(RedisConnectionError):
        view(RequestFactory().post("/x"))
    assert calls == [1]


def test_every_limit_must_say_what_happens_when_the_cache_is_down():
    with pytest.raises(ValueError):
        ratelimit(key="ip", rate="10/m", when_cache_down="maybe")
