"""Laptop mode (`make run`, SQLite) survives the legacy and unified events of one payment at once.

The suite's database is PostgreSQL (or SQLite in memory), neither of which shows SQLite's file
locking, so the race runs in a child process against a SQLite file with the project's own
settings: see sqlite_race.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
ROUNDS = 5  # without IMMEDIATE transactions every round fails; five make a lucky pass impossible
SQLITE_TIMEOUT_SECONDS = 20  # settings.py


def laptop_environment(database: Path) -> dict:
    """`make run`'s settings, except what would write into the project folder (the file broker)
    or leave the machine (email)."""
    return os.environ | {
        "DATABASE_URL": f"sqlite:///{database}",
        "DEBUG": "True",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "memory://",
        "CELERY_TASK_ALWAYS_EAGER": "True",  # the emails each payment sends run too, as the worker would
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "BREVO_API_KEY": "",
        "RECURRENTE_SECRET_KEY": "",
        "RECURRENTE_LIVE_MODE": "False",
        "LOG_LEVEL": "ERROR",
    }


def test_two_workers_applying_one_payment_on_a_sqlite_file_both_succeed_once(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "webhooks.tests.sqlite_race", str(ROUNDS)],
        cwd=PROJECT_DIR, env=laptop_environment(tmp_path / "db.sqlite3"),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])

    assert report["errors"] == []  # no "database is locked"
    assert report["outcomes"] == ["processed"] * 2 * ROUNDS
    assert report["event_statuses"] == ["processed"] * 2 * ROUNDS
    # Each payment fulfilled exactly once: one payment row, one owned site, one of each email.
    assert report["payments"] == report["unflagged_payments"] == ROUNDS
    assert report["owned_sites"] == ROUNDS
    assert report["welcome_emails"] == report["receipt_emails"] == ROUNDS
    # The second worker waited its turn for the write lock: briefly, nowhere near the timeout.
    assert report["slowest_seconds"] < SQLITE_TIMEOUT_SECONDS / 4
