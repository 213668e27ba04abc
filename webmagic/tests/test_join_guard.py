"""The test-only guard in conftest.py: an eager task running on another thread (the live server's)
must not make this thread's result.get() fail."""

import threading

from celery.result import assert_will_not_block, denied_join_result


def test_a_task_running_on_another_thread_does_not_block_this_ones_get():
    inside, release = threading.Event(), threading.Event()

    def eager_task_on_the_live_server_thread():
        with denied_join_result():
            inside.set()
            release.wait(5)

    other = threading.Thread(target=eager_task_on_the_live_server_thread)
    other.start()
    inside.wait(5)
    try:
        assert_will_not_block()  # raised "Never call result.get() within a task!" before
    finally:
        release.set()
        other.join()
