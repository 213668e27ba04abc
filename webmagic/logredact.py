"""Keep token links out of logs (DESIGN: logs never carry full tokens).

Set-password, reset and verification links, recovery and unsubscribe links and success-page
session ids are capabilities: whoever reads them in a log could use them; so is the password in a
broker, cache or database URL. Django's request log (4xx/5xx lines name the path), gunicorn's
access log and the error emails to ADMINS (webmagic/errorreports.py) all pass through `redact()`.
"""

import logging
import re

from gunicorn.glogging import Logger as GunicornBaseLogger

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


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger with the request line, path, query and referer redacted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
