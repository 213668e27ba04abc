"""Racing jobs on threads for the PostgreSQL concurrency tests."""

import threading

from django.db import connection


def run_together(jobs):
    """Start every job at the same moment, each on its own thread and database connection, and
    return their results in order. A job that raised fails the calling test (threads must not
    fail silently)."""
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def worker(index, job):
        try:
            barrier.wait()
            results[index] = job()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results
