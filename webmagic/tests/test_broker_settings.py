"""Broker connection settings the worker and beat depend on to survive Redis outages (issue 14;
the outages themselves are in test_fault_broker_restart.py)."""

from webmagic.celery import app


def test_the_worker_reconnects_to_the_broker_forever():
    # Celery's default gives up after 100 attempts (about 45 minutes) and the worker exits.
    assert app.conf.broker_connection_retry is True
    assert app.conf.broker_connection_max_retries is None


def test_running_tasks_finish_when_the_broker_connection_drops():
    # Cancelling them would kill a send_email mid-send for nothing, leaving its outcome unknown.
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False


def test_publishing_gives_up_after_two_tries():
    # Every enqueue is backed by a sweep; a request must not wait on a broker that is down.
    assert app.conf.task_publish_retry_policy["max_retries"] == 1
