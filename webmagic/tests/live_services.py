"""Real processes for fault tests: a private redis-server, and the Celery worker and beat started
with the Procfile's own command lines, against the pytest-django test database.

Use it from a transactional test (the processes only see committed rows), on PostgreSQL (they
cannot open SQLite's in-memory test database), marked `faults`:

    pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

    @pytest.fixture
    def live(tmp_path):
        with LiveServices(tmp_path) as services:
            yield services

    def test_something(live):
        redis = live.redis()                 # a private redis-server on a free port
        env = live.env(redis)                # production-like settings, broker = that Redis
        worker, beat = live.worker(env), live.beat(env)
        live.wait_until(lambda: ..., timeout=30, what="a heartbeat")
        with redis.down():                   # stopped; started again on the same port on exit
            time.sleep(5)
        worker.kill()                        # SIGKILL, the whole process group
        live.assert_alive(beat)

Everything is killed when the `with` ends, whatever happened; each process writes to a log file in
the test's tmp_path, and `wait_until` / `assert_alive` failures include the end of every log. The
logs are also printed at teardown (pytest shows them for a failed test). Tests are skipped when
redis-server is not installed.
"""

import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
PROCFILE = BASE_DIR / "Procfile"
REDIS_SERVER = shutil.which("redis-server")
# Settings that let the production settings load in a subprocess (see `_refuse_unsafe_production`).
PRODUCTION_LIKE_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": "fault-tests-only-" + "x" * 48,
    "RECURRENTE_SECRET_KEY": "sk_test_fault_tests_only",
    "RECURRENTE_LIVE_MODE": "False",
    "RECURRENTE_WEBHOOK_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "TRUSTED_PROXY_COUNT": "0",
    "BREVO_API_KEY": "",
}
LOG_TAIL_LINES = 60


def procfile_command(process: str) -> str:
    """The command line the Procfile gives `process` ("worker", "beat", "web", …)."""
    for line in PROCFILE.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise LookupError(f"the Procfile has no {process!r} process")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_subprocesses() -> str:
    """DATABASE_URL of the database this test runs on (the pytest-django test database)."""
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("fault tests need PostgreSQL: their processes cannot open SQLite's in-memory test database")
    credentials = quote(params["USER"] or "", safe="")
    if params["PASSWORD"]:
        credentials += ":" + quote(params["PASSWORD"], safe="")
    host = params["HOST"] or "localhost"
    port = f":{params['PORT']}" if params["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{quote(params['NAME'], safe='')}"


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2,
               details: Callable[[], str] = lambda: ""):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` seconds pass
    (AssertionError naming `what`, followed by `details()`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{details()}")
        time.sleep(interval)


def _die_with_parent() -> None:
    """In the child before exec: killed if the test process dies (a crashed xdist worker must not
    leave Celery processes behind). Linux only; elsewhere the `finally` cleanup is all there is."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ServiceProcess:
    """One process (and its children) in a process group of its own, output to `log_path`."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_path: Path):
        self.name, self.command, self.env, self.log_path = name, command, env, log_path
        self.popen: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        assert not self.alive, f"{self.name} is already running"
        with self.log_path.open("a") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {self.command}\n")
            log.flush()
            # bash expands the Procfile's ${VAR:-default}; exec makes the command the group leader.
            self.popen = subprocess.Popen(
                ["bash", "-c", f"exec {self.command}"], cwd=BASE_DIR, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def signal_group(self, signum: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process and its children (a crash, an OOM kill); waits until it is gone."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, grace: float = 10) -> None:
        """SIGTERM (as a platform stopping the process), SIGKILL after `grace` seconds."""
        if not self.alive:
            return
        self.signal_group(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def report(self) -> str:
        state = "running" if self.alive else f"exited ({self.returncode})"
        return f"----- {self.name} [{state}] {self.log_path} (last {LOG_TAIL_LINES} lines)\n{_log_tail(self.log_path)}"


class RedisServer(ServiceProcess):
    """A private redis-server on a free port, without persistence; stop and start it again on the
    same port for an outage, or pause it (SIGSTOP) for a Redis that hangs."""

    def __init__(self, directory: Path):
        self.port = free_port()
        command = shlex.join([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(directory)])
        super().__init__("redis", command, dict(os.environ), directory / "redis.log")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis.from_url(self.url(db), socket_timeout=2, socket_connect_timeout=2)

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def start(self) -> "RedisServer":
        super().start()
        wait_until(self.answers, timeout=15, what=f"redis-server on port {self.port} to answer", details=self.report)
        return self

    @contextmanager
    def down(self) -> Iterator[None]:
        """Stopped (SIGTERM, as a restart does) for the block; started again on the same port after."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def pause(self) -> None:
        self.signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)


class LiveServices:
    """Starts the processes a fault test needs and always kills them all on exit."""

    def __init__(self, directory: Path):
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server): fault tests not run")
        self.directory = Path(directory)
        self.processes: list[ServiceProcess] = []

    def __enter__(self) -> "LiveServices":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        try:
            for process in reversed(self.processes):
                if isinstance(process, RedisServer):
                    process.resume()  # a paused redis-server cannot act on SIGTERM
                process.stop(grace=5)
        finally:
            for process in self.processes:
                process.kill()
            # Shown by pytest when the test failed (captured output of a passing test is dropped).
            print(self.report())

    # --- Starting ---------------------------------------------------------------------------

    def redis(self) -> RedisServer:
        return self._add(RedisServer(self.directory)).start()

    def env(self, redis: RedisServer, **overrides: str) -> dict[str, str]:
        """The environment of a production-like process (DEBUG=False) on the test database, with
        `redis` as broker (db 0) and cache (db 1), and emails written as files to ./sent_emails/."""
        env = dict(os.environ)
        env.update(PRODUCTION_LIKE_ENV)
        env.update(
            DATABASE_URL=database_url_for_subprocesses(),
            CELERY_BROKER_URL=redis.url(0),
            REDIS_URL=redis.url(1),
            CELERY_TASK_ALWAYS_EAGER="False",  # pytest.ini makes tests eager; these processes are not
            EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            EMAIL_FILE_PATH=str(self.email_dir),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's celery, as `make run`
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env

    @property
    def email_dir(self) -> Path:
        return self.directory / "sent_emails"

    def worker(self, env: dict[str, str], name: str = "worker") -> ServiceProcess:
        """The Procfile's worker (WORKER_CONCURRENCY in `env` applies, as in production)."""
        return self.process(name, procfile_command("worker"), env)

    def beat(self, env: dict[str, str]) -> ServiceProcess:
        """The Procfile's beat (the database scheduler; see `beat_schedule_replace`)."""
        return self.process("beat", procfile_command("beat"), env)

    def django_script(self, name: str, code: str, env: dict[str, str]) -> ServiceProcess:
        """Python `code` run after django.setup() in its own process (as a web process would)."""
        script = f"import django; django.setup()\n{code}"
        return self.process(name, shlex.join([sys.executable, "-c", script]), env)

    def process(self, name: str, command: str, env: dict[str, str]) -> ServiceProcess:
        return self._add(ServiceProcess(name, command, env, self.directory / f"{name}.log")).start()

    def _add(self, process: ServiceProcess) -> ServiceProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.processes.append(process)
        return process

    # --- Checking ---------------------------------------------------------------------------

    def report(self) -> str:
        return "\n".join(process.report() for process in self.processes)

    def wait_until(self, predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2,
                   alive: tuple[ServiceProcess, ...] = ()):
        """`wait_until` with every log in the failure, failing at once if one of `alive` exits."""

        def done():
            self.assert_alive(*alive)
            return predicate()

        return wait_until(done, timeout=timeout, what=what, interval=interval, details=self.report)

    def assert_alive(self, *processes: ServiceProcess) -> None:
        dead = [process.name for process in processes if not process.alive]
        assert not dead, f"{', '.join(dead)} exited\n{self.report()}"


def beat_schedule_replace(every_seconds: dict[str, int]) -> None:
    """Make the test database's beat schedule exactly {task path: interval in seconds} (the
    migrations' rows may still be there; a transactional test flushes them only afterwards)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    PeriodicTask.objects.all().delete()
    for task, seconds in every_seconds.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.create(name=f"fault test: {task}", task=task, interval=interval)
