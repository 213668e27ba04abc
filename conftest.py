import pytest
from django.conf import settings


def on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_collection_modifyitems(config, items):
    if on_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://… (CI does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _clear_own_cache():
    from django.core.cache import cache

    prefix = settings.CACHES["default"].get("KEY_PREFIX")
    if prefix and settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        # Parallel test processes share the Redis database: delete only this process's keys.
        client = cache._cache.get_client(write=True)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _clear_cache():
    """Rate-limit counters and cached values must not leak between tests."""
    _clear_own_cache()
    yield
    _clear_own_cache()


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss@webmagic.test", "correct horse battery staple")
    client.force_login(user)
    client.user = user
    return client
