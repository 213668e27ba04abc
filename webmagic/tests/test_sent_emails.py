"""The staff page showing the emails laptop mode wrote to files (DEBUG only)."""

import re
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection

from webmagic import sent_emails

pytestmark = pytest.mark.django_db

FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
LIST_URL = "/admin/sent-emails/"


@pytest.fixture
def folder(settings, tmp_path):
    """Laptop mode: DEBUG (pytest-django turns it off for tests) and email as files in a folder."""
    settings.DEBUG = True
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path / "sent_emails")
    return tmp_path / "sent_emails"


SET_PASSWORD_URL = "http://testserver/portal/set-password/Mg/c3rt-abc123/"
WELCOME_HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Welcome</title></head>
<body style="margin:0;background:#f4f4f8;"><p>Hi María,</p>
<a href="{SET_PASSWORD_URL}" style="display:inline-block;background:#4f46e5;color:#fff;">Set your password</a>
</body></html>"""


def write(folder, *, subject, sent_at, to="someone@example.com", html=None, text=None):
    """One message written by Django's file backend (as the worker's send does), dated `sent_at`."""
    message = EmailMultiAlternatives(subject=subject, body=text or f"Text of {subject}", to=[to],
                                     headers={"Date": format_datetime(sent_at)})
    if html:
        message.attach_alternative(html, "text/html")
    get_connection(FILE_BACKEND, file_path=str(folder)).send_messages([message])


@pytest.fixture
def welcome(folder):
    """A welcome email, HTML and text, with its set-password link."""
    write(folder, subject="LA Plumbing Pros is yours — set your password", to="María López <maria.lopez@example.com>",
          sent_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC), html=WELCOME_HTML,
          text=f"Hi María,\n\nSet your password: {SET_PASSWORD_URL}\n")
    [sent] = sent_emails.sent_emails_list()
    return sent


def frame_url(email_id):
    return f"{LIST_URL}{email_id}/html/"


# --- The list -----------------------------------------------------------------------------------

def test_staff_see_every_sent_email_newest_first(staff_client, folder, welcome):
    write(folder, subject="Older one", sent_at=datetime(2020, 1, 1, 9, 0, tzinfo=UTC))
    write(folder, subject="Payment pa_1 has the wrong amount", to="alerts@webmagic.test",
          sent_at=datetime(2026, 3, 1, 12, 5, tzinfo=UTC))
    (folder / "notes.txt").write_text("not an email")

    response = staff_client.get(LIST_URL)

    assert response.status_code == 200
    body = response.content.decode()
    subjects = re.findall(r'<td class="sent-subject"><a href="[^"]+">([^<]+)</a>', body)
    assert subjects == ["Payment pa_1 has the wrong amount", "LA Plumbing Pros is yours — set your password", "Older one"]
    assert "maria.lopez@example.com" in body and "alerts@webmagic.test" in body
    assert "2020-01-01 03:00:00 CST" in body  # in TIME_ZONE, the zone named
    assert f'href="{LIST_URL}{welcome.id}/"' in body


def test_a_message_still_being_written_waits_for_its_separator(staff_client, folder):
    write(folder, subject="Complete", sent_at=datetime(2026, 1, 1, tzinfo=UTC))
    [path] = folder.iterdir()
    with path.open("ab") as file:
        file.write(b"Subject: Half written\nTo: x@example.com\n\nand still goi")

    assert [sent.subject for sent in sent_emails.sent_emails_list()] == ["Complete"]


def test_several_messages_in_one_file_are_each_listed(folder):
    messages = [EmailMultiAlternatives(subject=f"Message {n}", body="Hi", to=["a@example.com"]) for n in range(3)]
    get_connection(FILE_BACKEND, file_path=str(folder)).send_messages(messages)

    listed = sent_emails.sent_emails_list()
    assert [sent.subject for sent in listed] == ["Message 2", "Message 1", "Message 0"]
    assert all(sent_emails.sent_email_get(email_id=sent.id) == sent for sent in listed)


def test_an_empty_or_missing_folder_says_so(staff_client, folder):
    response = staff_client.get(LIST_URL)
    assert response.status_code == 200 and b"No emails yet" in response.content


def test_the_page_warns_when_emails_are_not_written_to_files(staff_client, folder, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert b"not being written to files" in staff_client.get(LIST_URL).content


# --- One email ----------------------------------------------------------------------------------

def test_staff_see_an_email_as_the_customer_does_in_a_sandboxed_frame(staff_client, welcome):
    page = staff_client.get(f"{LIST_URL}{welcome.id}/")

    assert page.status_code == 200
    body = page.content.decode()
    iframe = re.search(r"<iframe [^>]+>", body).group(0)
    assert f'src="{frame_url(welcome.id)}"' in iframe
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe
    # The page itself keeps the project's strict CSP: no inline style, framing only our own pages.
    assert "frame-src 'self'" in page["Content-Security-Policy"] and " style=" not in body
    # The headers, and the plain-text part with its set-password link.
    assert "María López &lt;maria.lopez@example.com&gt;" in body and "2026-03-01 06:00:00 CST" in body
    assert f"Set your password: {SET_PASSWORD_URL}" in body


def test_the_emails_html_is_its_own_sandboxed_document_with_links_opening_a_new_tab(staff_client, welcome):
    document = staff_client.get(frame_url(welcome.id))

    assert document.status_code == 200 and document["Content-Type"] == "text/html; charset=utf-8"
    html = document.content.decode()
    # As written, styles and all, plus one tag: every link opens a new tab.
    assert html == WELCOME_HTML.replace("<head>", '<head><base target="_blank">')
    csp = document["Content-Security-Policy"]
    assert csp.startswith("sandbox allow-popups allow-popups-to-escape-sandbox;")
    assert "default-src 'none'" in csp and "frame-ancestors 'self'" in csp and "script-src" not in csp
    assert document["X-Frame-Options"] == "SAMEORIGIN"
    assert document["Referrer-Policy"] == "no-referrer"


def test_an_email_without_html_shows_its_text_and_no_frame(staff_client, folder):
    write(folder, subject="Text only", sent_at=datetime(2026, 1, 1, tzinfo=UTC))
    [sent] = sent_emails.sent_emails_list()

    page = staff_client.get(f"{LIST_URL}{sent.id}/")
    assert page.status_code == 200 and b"Text of Text only" in page.content and b"<iframe" not in page.content
    assert staff_client.get(frame_url(sent.id)).status_code == 404


# --- Who may look, and when ----------------------------------------------------------------------

def urls(sent):
    return [LIST_URL, f"{LIST_URL}{sent.id}/", frame_url(sent.id)]


def test_anyone_not_staff_is_sent_to_the_admin_login(client, welcome, django_user_model):
    customer = django_user_model.objects.create_user("maria.lopez@example.com", "a-very-good-password-1")
    for who in (None, customer):
        if who:
            client.force_login(who)
        for url in urls(welcome):
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), (who, url)


def test_without_debug_the_page_does_not_exist(staff_client, welcome, settings):
    settings.DEBUG = False
    for url in urls(welcome):
        assert staff_client.get(url).status_code == 404, url
    assert LIST_URL.encode() not in staff_client.get("/admin/").content


def test_the_admin_index_links_it_in_debug(staff_client, folder):
    assert f'href="{LIST_URL}"'.encode() in staff_client.get("/admin/").content


# --- Ids are not paths ---------------------------------------------------------------------------

def test_an_id_cannot_reach_a_file_outside_the_folder(staff_client, folder, tmp_path):
    write(tmp_path, subject="Secret outside the folder", sent_at=datetime(2026, 1, 1, tzinfo=UTC))
    [outside] = tmp_path.glob("*.log")
    folder.mkdir(exist_ok=True)
    # The same name, one level up; and a link inside the folder that points out of it.
    escaping_id = f"../{outside.stem}-0"
    linked = folder / "20260101-000000-42.log"
    linked.symlink_to(outside)

    for email_id in (escaping_id, "20260101-000000-42-0", "..", f"{outside.stem}-0\n", "/etc/passwd"):
        assert sent_emails.sent_email_get(email_id=email_id) is None, email_id
    for url in (f"{LIST_URL}..%2F{outside.stem}-0/", f"{LIST_URL}..%2F{outside.stem}-0/html/", f"{LIST_URL}20260101-000000-42-0/"):
        response = staff_client.get(url)
        assert response.status_code == 404 and b"Secret outside" not in response.content, url
