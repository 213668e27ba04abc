"""Keep token links out of logs (DESIGN: logs never carry full tokens).

Set-password, reset and verification links, recovery and unsubscribe links and success-page
session ids are capabilities: whoever reads them in a log could use them; so is the password in a
broker, cache or database URL. Django's request log (4xx/5xx lines name the path), gunicorn's
access log and the error emails to ADMINS (webmagic/errorreports.py) all pass through `redact()`.

Production writes JSON lines (`LOG_FORMAT`, see settings.LOGGING): `RedactingJsonFormatter` for
Django, Celery and gunicorn alike, redacting every field it writes.
"""

import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger as GunicornBaseLogger
from pythonjsonlogger.json import JsonFormatter

_PATTERNS = [
    (re.compile(r"(/portal/(?:set-password|password-reset|verify-email)/)[^/\s\"?]+/[^/\s\"?]+"), r"\1[redacted]/[redacted]"),
    (re.compile(r"(/checkout/(?:recover|unsubscribe)/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(session=)[^&\s\"]+"), r"\1[redacted]"),
    # The password in a URL (scheme://user:password@host): broker, cache and database URLs.
    (re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@\"']*:)[^/\s@\"']+@", re.IGNORECASE), r"\1[redacted]@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactTokensFilter(logging.Filter):
    """A logging filter for Django's request loggers: the message is rendered, then redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


# The record attributes each JSON line carries, under these keys.
JSON_LOG_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger", "message": "message"}
_JSON_PLAIN_TYPES = (str, int, float, bool, type(None))


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, and `exception`
    (the traceback) or `stack` when the record has one.

    Every string is redacted here, not only the message: RedactTokensFilter renders and redacts
    the message, but tracebacks and extra fields reach the formatter untouched, and gunicorn's own
    handlers have no filter. Extra fields holding plain values are kept (Django's `status_code`);
    objects are left out (Django's `request`, whose text names the path), never stringified.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", list(JSON_LOG_FIELDS))
        kwargs.setdefault("rename_fields", {**JSON_LOG_FIELDS, "exc_info": "exception", "stack_info": "stack"})
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {
            key: redact(value) if isinstance(value, str) else value
            for key, value in log_data.items() if isinstance(value, _JSON_PLAIN_TYPES)
        }


def json_logs() -> bool:
    """Whether logs are JSON lines: settings.LOG_FORMAT (json in production, text with DEBUG)."""
    # gunicorn's master asks before it imports webmagic.wsgi, which would name the settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webmagic.settings")
    from django.conf import settings

    return settings.LOG_FORMAT == "json"


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger with the request line, path, query and referer redacted, writing JSON
    lines like the app's when LOG_FORMAT is json (its access lines become the `message`).

    gunicorn sets up its loggers in the master process, before the app (and Django's LOGGING) is
    loaded; reading LOG_FORMAT loads the settings there, the same `.env` and environment."""

    def _set_handler(self, log, output, fmt, stream=None):
        if json_logs():
            fmt = RedactingJsonFormatter()
        super()._set_handler(log, output, fmt, stream=stream)

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
