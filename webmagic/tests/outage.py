"""A real Redis that does not answer, for the cache-outage tests (webmagic/ratelimit.py).

Nothing is faked: the cache is Django's RedisCache pointed at a local port nobody listens on, so
every count raises the connection error production would see."""

import socket

import pytest
from django.core.cache import cache
from redis.exceptions import ConnectionError as RedisConnectionError


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free, and closed again when the probe closes


def cache_unreachable(settings) -> None:
    """Point the default cache (the rate limits' cache) at a closed port, and prove it is down."""
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
    }}
    settings.RATELIMIT_USE_CACHE = "default"
    with pytest.raises(RedisConnectionError):
        cache.get("anything")

