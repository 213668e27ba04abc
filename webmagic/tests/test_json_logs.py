"""Production logs are JSON lines (LOG_FORMAT), redacted like every other log.

The configured handlers are checked in a fresh Python process, with the settings as production
loads them: configuring logging here would replace the test run's own handlers.
"""

import io
import json
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from gunicorn.config import Config

from webmagic.logredact import GunicornLogger, RedactingJsonFormatter, RedactTokensFilter
from webmagic.tests.test_settings import GOOD_PRODUCTION_ENV, ROOT

TOKEN_PATH = "/portal/set-password/MQ/cw8k2-tok3n-123/"
SECRETS = ("cw8k2-tok3n-123", "s3cret-pass", "R3COVER-T0KEN")

# Logs what production logs: a request line from Django (with its `request` object and status),
# an application warning, and an exception whose text holds a broker password and a token link.
LOG_SOME_LINES = f"""
import logging, sys
import django
django.setup()
if "--worker" in sys.argv:  # what `celery worker` and `celery beat` do to logging when they start
    from webmagic.celery import app
    app.log.setup_logging_subsystem(loglevel="INFO")

class Request:
    def __str__(self):
        return "<WSGIRequest: GET '{TOKEN_PATH}'>"

logging.getLogger("django.request").warning("Not Found: %s", "{TOKEN_PATH}", extra={{"status_code": 404, "request": Request()}})
logging.getLogger("webmagic.alerts").warning("staff alert %s raised", 7)
try:
    raise ConnectionError("redis://:s3cret-pass@redis.internal:6379/0 refused, from /checkout/recover/R3COVER-T0KEN/")
except ConnectionError:
    logging.getLogger("checkout.tasks").exception("recovery email failed")
"""


def log_some_lines(env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEBUG", "LOG_FORMAT"))}
    env.update({"DJANGO_SETTINGS_MODULE": "webmagic.settings", **env_overrides})
    return subprocess.run(
        [sys.executable, "-c", LOG_SOME_LINES, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )


def json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is one complete JSON object


def assert_production_json(stderr: str) -> None:
    request_line, warning, failure = json_lines(stderr)
    assert set(request_line) == {"time", "level", "logger", "message", "status_code"}  # no `request` object
    assert request_line["level"] == "WARNING" and request_line["logger"] == "django.request"
    assert request_line["message"] == "Not Found: /portal/set-password/[redacted]/[redacted]/"
    assert request_line["status_code"] == 404
    assert warning["message"] == "staff alert 7 raised" and warning["logger"] == "webmagic.alerts"
    assert set(failure) == {"time", "level", "logger", "message", "exception"}
    assert failure["level"] == "ERROR" and failure["message"] == "recovery email failed"
    assert failure["exception"].startswith("Traceback") and "ConnectionError: redis://:[redacted]@redis.internal" in failure["exception"]
    assert "+00:00" in failure["time"]
    assert not [secret for secret in SECRETS if secret in stderr]


def test_production_logs_are_json_lines_with_tokens_and_passwords_redacted():
    result = log_some_lines(GOOD_PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert_production_json(result.stderr)


def test_the_celery_worker_keeps_the_json_lines_and_the_redaction():
    result = log_some_lines(GOOD_PRODUCTION_ENV, "--worker")
    assert result.returncode == 0, result.stderr
    assert_production_json(result.stderr)


def test_debug_logs_are_readable_text_lines_still_redacted():
    result = log_some_lines({"DEBUG": "True"})
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.endswith(" WARNING django.request Not Found: /portal/set-password/[redacted]/[redacted]/")
    assert "cw8k2-tok3n-123" not in result.stderr


def test_log_format_json_also_works_in_debug_and_unknown_formats_are_refused():
    result = log_some_lines({"DEBUG": "True", "LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stderr)[1]["message"] == "staff alert 7 raised"
    refused = log_some_lines({"DEBUG": "True", "LOG_FORMAT": "yaml"})
    assert refused.returncode != 0 and "LOG_FORMAT must be json or text, not 'yaml'" in refused.stderr


# --- The formatter itself -----------------------------------------------------------------------

def format_through_console(record: logging.LogRecord) -> str:
    """What the production console handler writes for `record`: its filter, then its formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactTokensFilter())
    handler.setFormatter(RedactingJsonFormatter())
    handler.handle(record)
    return stream.getvalue()


def test_a_record_is_one_line_holding_one_json_object():
    try:
        raise ValueError("two\nlines")
    except ValueError:
        record = logging.LogRecord("webmagic.x", logging.ERROR, __file__, 1, "failed for %s", (TOKEN_PATH,), sys.exc_info())
    output = format_through_console(record)
    assert output.count("\n") == 1 and output.endswith("\n")
    data = json.loads(output)
    assert data["message"] == "failed for /portal/set-password/[redacted]/[redacted]/"
    assert data["logger"] == "webmagic.x" and data["level"] == "ERROR" and "ValueError: two\nlines" in data["exception"]


def test_extra_fields_are_kept_when_plain_and_redacted_and_dropped_when_objects():
    record = logging.LogRecord("webmagic.x", logging.INFO, __file__, 1, "done", (), None)
    record.__dict__.update(attempts=3, ok=True, link=f"https://webmagic.example{TOKEN_PATH}", request=object())
    data = json.loads(format_through_console(record))
    assert data["attempts"] == 3 and data["ok"] is True
    assert data["link"] == "https://webmagic.example/portal/set-password/[redacted]/[redacted]/"
    assert "request" not in data


def test_a_stack_is_written_and_redacted():
    stack = f"Stack (most recent call last):\n  {TOKEN_PATH}"
    record = logging.LogRecord("webmagic.x", logging.INFO, __file__, 1, "here", (), None, sinfo=stack)
    data = json.loads(format_through_console(record))
    assert data["stack"].startswith("Stack") and "cw8k2-tok3n-123" not in data["stack"]


# --- gunicorn -----------------------------------------------------------------------------------

@pytest.fixture
def gunicorn_logs():
    """gunicorn's loggers as GunicornLogger sets them up (writing to stderr and stdout), restored after."""
    loggers = [logging.getLogger("gunicorn.error"), logging.getLogger("gunicorn.access")]
    saved = [(log, list(log.handlers), log.propagate, log.level) for log in loggers]

    def make() -> GunicornLogger:
        cfg = Config()
        cfg.set("accesslog", "-")
        cfg.set("errorlog", "-")
        return GunicornLogger(cfg)

    yield make
    for log, handlers, propagate, level in saved:
        log.handlers[:] = handlers
        log.propagate, log.level = propagate, level


class Response:
    status = "404 Not Found"
    sent = 10
    headers = []


ENVIRON = {"REQUEST_METHOD": "GET", "RAW_URI": TOKEN_PATH, "PATH_INFO": TOKEN_PATH, "SERVER_PROTOCOL": "HTTP/1.1",
           "QUERY_STRING": "", "REMOTE_ADDR": "203.0.113.9", "HTTP_REFERER": "-", "HTTP_USER_AGENT": "test"}


def test_gunicorn_writes_json_lines_when_the_app_does(settings, gunicorn_logs, capsys):
    settings.LOG_FORMAT = "json"
    logger = gunicorn_logs()
    logger.access(Response(), {}, ENVIRON, timedelta(milliseconds=5))
    logger.error("Invalid request from %s", f"GET {TOKEN_PATH}")
    out, err = capsys.readouterr()
    (access,), (error,) = json_lines(out), json_lines(err)
    assert access["logger"] == "gunicorn.access" and access["level"] == "INFO"
    assert '"GET /portal/set-password/[redacted]/[redacted]/ HTTP/1.1" 404 10' in access["message"]
    assert error["logger"] == "gunicorn.error" and error["message"].endswith("[redacted]/[redacted]/")
    assert "cw8k2-tok3n-123" not in out + err


def test_gunicorn_keeps_its_own_text_lines_in_text_mode(settings, gunicorn_logs, capsys):
    settings.LOG_FORMAT = "text"
    gunicorn_logs().access(Response(), {}, ENVIRON, timedelta(milliseconds=5))
    out = capsys.readouterr().out
    assert out.startswith('203.0.113.9 - - [') and "/portal/set-password/[redacted]/[redacted]/" in out
