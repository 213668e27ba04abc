"""The emails laptop mode wrote to files (Django's filebased EmailBackend, EMAIL_FILE_PATH), read
back for the staff page that shows them (webmagic/admin_views.py; DEBUG only).

The backend writes one file per connection, named `<YYYYmmdd-HHMMSS>-<number>.log`, each message
followed by a line of 79 dashes. An email's id is its file's name without `.log` plus its place in
the file: `20261202-095302-140523456-0`. Ids come from URLs, so they are checked against that shape
and the file must resolve inside the folder: nothing else on disk can be read through them.
"""

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

from django.conf import settings

FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
SEPARATOR = b"\n" + b"-" * 79 + b"\n"
STEM = r"\d{8}-\d{6}-\d{1,40}"
FILE_NAME = re.compile(rf"{STEM}\.log", re.ASCII)
EMAIL_ID = re.compile(rf"(?P<stem>{STEM})-(?P<index>\d{{1,4}})", re.ASCII)  # always fullmatch()
# The page lists the newest files only: a laptop folder can grow for months.
LIST_FILES_LIMIT = 200
NO_DATE = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SentEmail:
    id: str
    sent_at: datetime | None
    from_email: str
    to: str
    subject: str
    html: str  # the HTML alternative, "" when the email has none
    text: str  # the plain-text body, "" when the email has none


def sent_emails_folder() -> Path:
    return Path(settings.EMAIL_FILE_PATH)


def sent_emails_written_to_files() -> bool:
    return settings.EMAIL_BACKEND == FILE_BACKEND


def sent_emails_list(*, folder: Path | None = None) -> list[SentEmail]:
    """Every email in the newest files, newest first."""
    folder = folder or sent_emails_folder()
    if not folder.is_dir():
        return []
    files = sorted((path for path in folder.iterdir() if FILE_NAME.fullmatch(path.name)), key=lambda path: path.name, reverse=True)
    files = files[:LIST_FILES_LIMIT]
    # By the Date header, which has whole seconds only; then by when the file was last written
    # (nanoseconds), later messages of one file being newer.
    keyed = []
    for path in files:
        try:
            written_ns, emails = path.stat().st_mtime_ns, _file_emails(path)
        except OSError:
            continue  # deleted since the folder was listed
        keyed += [((sent.sent_at or NO_DATE, written_ns, index), sent) for index, sent in enumerate(emails)]
    return [sent for _key, sent in sorted(keyed, key=lambda pair: pair[0], reverse=True)]


def sent_email_get(*, email_id: str, folder: Path | None = None) -> SentEmail | None:
    """The email with this id, or None for an id that names no email (or any other path)."""
    folder = folder or sent_emails_folder()
    match = EMAIL_ID.fullmatch(email_id)
    if match is None:
        return None
    path = (folder / f"{match['stem']}.log").resolve()
    if path.parent != folder.resolve() or not path.is_file():
        return None
    return next((sent for sent in _file_emails(path) if sent.id == email_id), None)


def _file_emails(path: Path) -> list[SentEmail]:
    chunks = path.read_bytes().split(SEPARATOR)
    # The last chunk is what follows the last separator: "" when complete, a message still being
    # written otherwise (shown once its separator is there).
    return [_parse(raw, email_id=f"{path.stem}-{index}") for index, raw in enumerate(chunks[:-1])]


def _parse(raw: bytes, *, email_id: str) -> SentEmail:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return SentEmail(
        id=email_id, sent_at=_date(message), from_email=str(message.get("From", "")), to=str(message.get("To", "")),
        subject=str(message.get("Subject", "")), html=_body(message, "html"), text=_body(message, "plain"),
    )


def _date(message: EmailMessage) -> datetime | None:
    try:
        sent_at = parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
    except (TypeError, ValueError):
        return None
    # "-0000" parses to a naive datetime; it means UTC, and naive and aware ones cannot be sorted together.
    return sent_at.replace(tzinfo=UTC) if sent_at and sent_at.tzinfo is None else sent_at


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return ""
    return part.get_content()


def html_for_frame(html: str) -> str:
    """The email's HTML as the customer's mail client shows it, with every link opening a new tab:
    inside the sandboxed frame a link would otherwise replace the email itself."""
    base = '<base target="_blank">'
    head = re.search(r"<head(\s[^>]*)?>", html, flags=re.IGNORECASE)
    if head:
        return html[: head.end()] + base + html[head.end():]
    return base + html


def sent_emails_page_enabled() -> bool:
    """The page exists in DEBUG only: in production emails go through Brevo, and its own log is
    where to look."""
    return settings.DEBUG
