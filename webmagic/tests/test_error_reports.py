"""The error emails Django sends ADMINS (webmagic/errorreports.py): no secrets or token links in
them, and one mail per distinct error per window, not one per failing request."""

import logging

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.views.debug import ExceptionReporter

from customers import views as customer_views
from customers.tests.factories import CustomerFactory
from portal import selectors as portal_selectors
from webmagic.errorreports import RedactingExceptionReporterFilter, ThrottledAdminEmailHandler

pytestmark = pytest.mark.django_db

SECRETS = {
    "CELERY_BROKER_URL": "redis://:broker-pass-1@redis.internal:6379/1",
    "REDIS_URL": "redis://:cache-pass-2@redis.internal:6379/0",
    "REPORTING_STORE": {"LOCATION": "postgres://app:db-pass-3@db.internal:5432/webmagic"},  # an innocent name
    "SENTRY_DSN": "https://public:dsn-pass-4@sentry.example/1",
    "ALERT_WEBHOOK_URL": "https://hooks.example/services/T0/B0/hook-secret-5",
}
TOKEN_PATH = "/portal/set-password/MQ/tok-abc123-secret/"
SESSION_ID = "9b2f6c1e-4d7a-4a51-8f0e-2c6b1d9e7a30"
RECOVERY_LINK = "https://webmagic.example/checkout/recover/rec-token-XYZ/"
NEVER_IN_A_MAIL = [
    "broker-pass-1", "cache-pass-2", "db-pass-3", "dsn-pass-4", "hook-secret-5",
    "tok-abc123-secret", SESSION_ID, "rec-token-XYZ",
]


@pytest.fixture
def production_like(settings):
    settings.DEBUG = False
    settings.ADMINS = [("Staff", "alerts@webmagic.test")]
    for name, value in SECRETS.items():
        setattr(settings, name, value)


@pytest.fixture
def broken_set_password_page(monkeypatch):
    """The set-password page (a token path) fails inside the view, where `token` is a local."""
    def broken(**kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(customer_views.services, "set_password_user_from_uidb64", broken)


def request_failing(path=TOKEN_PATH, **extra):
    response = Client(raise_request_exception=False).get(path, **extra)
    assert response.status_code == 500
    return response


def whole_mail(message) -> str:
    html = "".join(content for content, _type in message.alternatives)
    return "\n".join([message.subject, message.body, html])


def test_the_error_mail_carries_no_secret_and_no_token(production_like, broken_set_password_page, error_mail_handler):
    error_mail_handler.include_html = True  # production sends text only; the HTML report must be clean too
    request_failing(f"{TOKEN_PATH}?session={SESSION_ID}&page=2", HTTP_REFERER=RECOVERY_LINK)

    [message] = mail.outbox
    assert message.to == ["alerts@webmagic.test"] and message.alternatives  # text and HTML
    everything = whole_mail(message)
    leaked = [secret for secret in NEVER_IN_A_MAIL if secret in everything]
    assert leaked == []
    # Still a useful report: what failed, where, and the settings that are not secret.
    assert "/portal/set-password/[redacted]/[redacted]/" in message.subject
    assert "RuntimeError" in message.body and "database hiccup" in message.body
    assert "set_password" in message.body and "page = '2'" in message.body
    assert "postgres://app:[redacted]@db.internal" in message.body  # the host of a URL stays, its password goes
    for hidden in ("CELERY_BROKER_URL", "REDIS_URL", "SENTRY_DSN", "ALERT_WEBHOOK_URL", "DATABASES"):
        assert f"{hidden} = '********************'" in message.body


def test_the_filter_hides_url_broker_dsn_and_database_settings_and_passwords_in_any_url(production_like):
    safe = RedactingExceptionReporterFilter().get_safe_settings()
    for name in ("CELERY_BROKER_URL", "REDIS_URL", "SENTRY_DSN", "ALERT_WEBHOOK_URL", "DATABASES", "SECRET_KEY"):
        assert safe[name] == "********************"
    assert safe["REPORTING_STORE"] == {"LOCATION": "postgres://app:[redacted]@db.internal:5432/webmagic"}
    assert safe["CACHES"]["default"]["BACKEND"] == settings.CACHES["default"]["BACKEND"]
    assert safe["TIME_ZONE"] == settings.TIME_ZONE  # ordinary settings are still shown


def test_the_project_reports_with_the_redacting_filter_and_reporter():
    reporter = ExceptionReporter(None, None, None, None)
    assert isinstance(reporter.filter, RedactingExceptionReporterFilter)
    assert settings.DEFAULT_EXCEPTION_REPORTER == "webmagic.errorreports.RedactingExceptionReporter"


def test_a_flood_of_one_error_sends_one_mail(production_like, broken_set_password_page):
    for _ in range(50):
        request_failing()
    assert len(mail.outbox) == 1


def test_distinct_errors_are_each_reported(production_like, broken_set_password_page, monkeypatch):
    request_failing()

    def other_failure(*args, **kwargs):
        raise ValueError("another bug")

    monkeypatch.setattr(portal_selectors, "portal_sites_for_owner", other_failure)
    client = Client(raise_request_exception=False)
    client.force_login(CustomerFactory())
    assert client.get("/portal/").status_code == 500
    request_failing()  # the first one again: held back
    assert [("RuntimeError" in m.body, "ValueError" in m.body) for m in mail.outbox] == [(True, False), (False, True)]


def test_after_the_window_the_error_is_mailed_again_with_how_many_were_held_back(
    production_like, broken_set_password_page, error_mail_handler,
):
    now = [1000.0]
    error_mail_handler.clock = lambda: now[0]
    for _ in range(5):
        request_failing()
    now[0] += error_mail_handler.per_error_seconds - 1
    request_failing()
    assert len(mail.outbox) == 1
    now[0] += 2
    request_failing()
    assert len(mail.outbox) == 2
    assert "(and 5 more like it not mailed)" in mail.outbox[1].subject


def record(n: int) -> logging.LogRecord:
    return logging.makeLogRecord({
        "name": "django.request", "levelno": logging.ERROR, "levelname": "ERROR", "msg": "failure %s", "args": (n,),
        "pathname": "somewhere.py", "lineno": n,
    })


def test_at_most_so_many_mails_an_hour_whatever_the_errors(production_like):
    handler = ThrottledAdminEmailHandler(per_error_minutes=15, max_per_hour=3)
    now = [0.0]
    handler.clock = lambda: now[0]
    for n in range(10):
        handler.handle(record(n))
    assert [m.subject for m in mail.outbox] == ["[Django] ERROR: failure 0", "[Django] ERROR: failure 1", "[Django] ERROR: failure 2"]
    now[0] += 3600
    handler.handle(record(3))
    assert mail.outbox[-1].subject == "[Django] ERROR: failure 3 (and 1 more like it not mailed)"


def test_nothing_is_rendered_or_sent_without_admins(settings, monkeypatch):
    settings.ADMINS = []
    handler = ThrottledAdminEmailHandler()
    monkeypatch.setattr(handler, "send_mail", lambda *a, **k: pytest.fail("no mail without ADMINS"))
    handler.handle(record(1))
    assert mail.outbox == []
