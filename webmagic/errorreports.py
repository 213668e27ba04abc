"""What staff receive when a request fails: Django's error email to ADMINS, minus secrets and floods.

Django's report lists every setting, the request (path, query, headers) and each frame's local
variables. Its default filter hides settings named like API/KEY/SECRET/PASS…, but not the broker,
cache or database URLs that carry passwords, nor the token links (set-password, reset, recovery…)
in the request's path. `RedactingExceptionReporterFilter` and `RedactingExceptionReporter` hide
those, with the patterns of webmagic/logredact.py.

During an outage every request fails the same way, and Django mails once per request, from the
request, synchronously (anymail posts to Brevo over HTTP). `ThrottledAdminEmailHandler` mails one
error once per window and caps the mails per hour, so a flood neither floods the inbox nor makes
every failing request wait on Brevo. It counts in process memory on purpose: the cache and the
database may be the very things that are down.
"""

import re
import time
from collections import Counter, deque
from copy import copy

from django.conf import settings
from django.core.mail import get_connection
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from .logredact import redact


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: settings (and request headers, and local variables) named like a
    URL, broker, DSN or database are hidden, and every string shown loses token paths and the
    password of any `scheme://user:password@host` URL."""

    hidden_settings = re.compile(SafeExceptionReporterFilter.hidden_settings.pattern + "|URL|BROKER|DSN|DATABASE", re.I)

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)  # recurses through dicts, lists, tuples via this method
        return redact(cleansed) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        """Locals are hidden by name as settings are (`token`, `password`, `secret_key`…), and
        strings and dicts are cleansed: a view's `token` argument, the resolver's kwargs."""
        return [
            (name, self.cleanse_setting(name, value) if isinstance(value, (str, dict)) or self.hidden_settings.search(name) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def query_value_cleansed(self, key, value):
        """A query parameter is a token when logredact would redact `key=value` (the success
        page's `session=`), or when its name is one of the hidden ones."""
        pair = f"{key}={value}"
        return self.cleansed_substitute if redact(pair) != pair else self.cleanse_setting(key, value)


class RedactingExceptionReporter(ExceptionReporter):
    """Django's reporter with the query string cleansed (Django shows request.GET as it came) and
    the finished text and HTML passed through logredact, for the path and URL it prints from the
    request itself."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        if self.request is not None:
            cleanse = getattr(self.filter, "query_value_cleansed", RedactingExceptionReporterFilter().query_value_cleansed)
            data["request_GET_items"] = [(key, cleanse(key, value)) for key, value in self.request.GET.items()]
        return data

    def get_traceback_text(self):
        return redact(super().get_traceback_text())

    def get_traceback_html(self):
        return redact(super().get_traceback_html())


def error_fingerprint(record) -> tuple:
    """Two records are the same error when the same logger reports the same exception type raised
    at the same line (or, with no exception, the same log call and status code)."""
    exception_type, location = None, (record.pathname, record.lineno)
    if record.exc_info and record.exc_info[0] is not None:
        exception_type = f"{record.exc_info[0].__module__}.{record.exc_info[0].__qualname__}"
        tb = record.exc_info[2]
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            location = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    return (record.name, exception_type, location, getattr(record, "status_code", None))


class ThrottledAdminEmailHandler(AdminEmailHandler):
    """AdminEmailHandler that mails each distinct error (error_fingerprint) at most once per
    `per_error_minutes` and at most `max_per_hour` mails in all, per process. The next mail about
    an error says how many like it were held back. A held-back record costs a dictionary lookup:
    no report is rendered and no send is attempted, so during an outage the failing requests are
    not also waiting on the mail provider. The few sends that do happen have a short timeout."""

    SEND_TIMEOUT_SECONDS = 5

    def __init__(self, *args, per_error_minutes: float = 15, max_per_hour: int = 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_error_seconds = per_error_minutes * 60
        self.max_per_hour = max_per_hour
        self.clock = time.monotonic
        self.reset()

    def reset(self) -> None:
        self._last_mailed: dict[tuple, float] = {}  # one entry per distinct error: a bounded set
        self._held_back: Counter[tuple] = Counter()
        self._mailed_at: deque[float] = deque()

    def _admit(self, fingerprint: tuple) -> int | None:
        """None when this record must not be mailed; else how many like it were held back."""
        now = self.clock()
        # The handler's own lock: requests on several threads share one handler. Handler.__init__
        # always creates it (createLock); the stubs allow None for handlers that never call it.
        with self.lock:  # type: ignore[union-attr]
            while self._mailed_at and now - self._mailed_at[0] >= 3600:
                self._mailed_at.popleft()
            last = self._last_mailed.get(fingerprint)
            if (last is not None and now - last < self.per_error_seconds) or len(self._mailed_at) >= self.max_per_hour:
                self._held_back[fingerprint] += 1
                return None
            self._last_mailed[fingerprint] = now
            self._mailed_at.append(now)
            return self._held_back.pop(fingerprint, 0)

    def emit(self, record):
        if not settings.ADMINS:
            return
        held_back = self._admit(error_fingerprint(record))
        if held_back is None:
            return
        if held_back:
            record = copy(record)  # other handlers share the original
            record.msg, record.args = f"{record.getMessage()} (and {held_back} more like it not mailed)", ()
        super().emit(record)

    def send_mail(self, subject, message, *args, **kwargs):
        # The last word on what leaves the machine: the subject and the message's first line come
        # from the log record (the request path), not from the reporter.
        if kwargs.get("html_message"):
            kwargs["html_message"] = redact(kwargs["html_message"])
        super().send_mail(redact(subject), redact(message), *args, **kwargs)

    def connection(self):
        # anymail's Brevo backend waits 30 s by default; every Django backend accepts `timeout`.
        return get_connection(backend=self.email_backend, fail_silently=True, timeout=self.SEND_TIMEOUT_SECONDS)
