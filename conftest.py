import threading

import pytest
from celery import _state as celery_state
from celery import result as celery_result
from django.conf import settings


def _keep_celerys_join_guard_per_thread() -> None:
    """An eager task marks "a task is running here: result.get() would deadlock" in one
    process-wide variable while it runs. In tests the live server's thread runs eager tasks (a
    browser polling the success page) while the test's own thread may call .get() on another
    task's result, which then fails at random. In production the mark belongs to one worker
    process; here it is kept per thread, which is what it means."""
    flag = threading.local()

    def set_blocks(blocks: bool) -> None:
        flag.blocks = blocks

    def blocks() -> bool:
        return getattr(flag, "blocks", False)

    for module in (celery_state, celery_result):
        module._set_task_join_will_block = set_blocks
        module.task_join_will_block = blocks


_keep_celerys_join_guard_per_thread()


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


@pytest.fixture(autouse=True)
def error_mail_handler():
    """The configured ThrottledAdminEmailHandler (mails to ADMINS), fresh for each test: it counts
    in process memory, and one test's errors must not hold back the next's."""
    import logging

    from webmagic.errorreports import ThrottledAdminEmailHandler

    handler = next((h for h in logging.getLogger("django").handlers if isinstance(h, ThrottledAdminEmailHandler)), None)
    if handler is None:  # logging configured some other way by the test run
        yield None
        return
    handler.reset()
    clock, include_html = handler.clock, handler.include_html
    yield handler
    handler.clock, handler.include_html = clock, include_html


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss@webmagic.test", "correct horse battery staple")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def beat_schedule(db):
    """The django-celery-beat rows our data migrations create, as a fresh database has them.

    Transactional tests flush tables between tests, migration-created rows included, so a test
    about the schedule re-applies those migrations' forward functions (they are idempotent)."""
    from django.apps import apps
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.operations import RunPython
    from django_celery_beat.models import PeriodicTask

    ours = {"webmagic", "customers", "sites", "checkout", "webhooks"}
    for (app_label, name), migration in sorted(MigrationLoader(connection).disk_migrations.items()):
        if app_label not in ours or "periodic_task" not in name:
            continue
        for operation in migration.operations:
            if isinstance(operation, RunPython):
                operation.code(apps, connection.schema_editor())
    return PeriodicTask.objects


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """Post a signed Recurrente delivery to our endpoint and run what it enqueues (processing,
    then emails) as a worker would. Shared by the webhooks and checkout tests."""
    from webhooks.tests.helpers import post_event

    def _deliver(payload, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_event(client, payload, **kwargs)
        assert response.status_code == 200, response.content
        return response

    return _deliver
