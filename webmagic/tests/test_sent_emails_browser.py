"""The sent-emails page in a real browser: the email's HTML renders inside its sandboxed frame
under both CSPs (ours and the email document's), and its links open in a new tab."""

import pytest
from django.conf import settings as django_settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.test import Client

from webmagic.tests.conftest import watched_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff_page(chromium, live_server, django_user_model):
    """A desktop browser signed in as staff (the session cookie of a test client's login)."""
    staff = django_user_model.objects.create_superuser("boss@webmagic.test", "correct horse battery staple")
    client = Client()
    client.force_login(staff)
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME,
                          "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value, "url": live_server.url}])
    yield watched_page(context)
    context.close()


def test_staff_read_an_email_and_follow_its_link_in_a_new_tab(staff_page, live_server, settings, tmp_path, screenshot):
    settings.DEBUG = True
    folder = tmp_path / "sent_emails"
    settings.EMAIL_FILE_PATH = str(folder)
    set_password_url = f"{live_server.url}/portal/login/?next=/portal/"  # any page of ours will do
    message = EmailMultiAlternatives(subject="LA Plumbing Pros is yours — set your password", to=["maria.lopez@example.com"],
                                     body=f"Set your password: {set_password_url}")
    message.attach_alternative(
        f'<html><head><title>Welcome</title></head><body style="background:#f4f4f8"><p>Hi María,</p>'
        f'<a href="{set_password_url}" style="display:inline-block;padding:13px 22px;background:#4f46e5;color:#fff">'
        "Set your password</a></body></html>", "text/html",
    )
    get_connection("django.core.mail.backends.filebased.EmailBackend", file_path=str(folder)).send_messages([message])

    page = staff_page
    page.goto(f"{live_server.url}/admin/")
    page.get_by_role("link", name="Sent emails").click()
    screenshot(page, "admin-sent-emails-list")
    page.get_by_role("link", name="LA Plumbing Pros is yours — set your password").click()

    email = page.frame_locator("iframe.sent-email-frame")
    button = email.get_by_role("link", name="Set your password")
    assert button.is_visible()
    # Its own inline styles apply inside the frame (our pages' CSP forbids them, the email's allows them).
    assert button.evaluate("link => getComputedStyle(link).backgroundColor") == "rgb(79, 70, 229)"
    screenshot(page, "admin-sent-email")
    with page.context.expect_page() as new_tab:
        button.click()
    opened = new_tab.value
    opened.wait_for_load_state()
    assert opened.url.startswith(f"{live_server.url}/portal/"), opened.url  # (signed in: login sends on to next)
    assert "/admin/sent-emails/" in page.url  # the staff page stayed where it was
    # Nothing refused by either CSP. (Chromium also reports the scripts Playwright itself tries in
    # the frame as blocked by its sandbox: the email may run none, which is the point.)
    assert [error for error in page.console_errors if "Content Security Policy" in error] == []
