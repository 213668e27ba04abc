import logging

import pytest

from webmagic.logredact import GunicornLogger, RedactTokensFilter, redact


@pytest.mark.parametrize(
    "line, secret",
    [
        ('"GET /portal/set-password/MQ/cw8k2-a1b2c3d4e5/ HTTP/1.1" 302', "cw8k2-a1b2c3d4e5"),
        ("Not Found: /portal/password-reset/MTI/set-password-token/", "set-password-token"),
        ("Bad Request: /portal/verify-email/Mw/cw9-abcdef/", "cw9-abcdef"),
        ("Conflict: /checkout/recover/0f1e2d3c4b5a69788796a5b4c3d2e1f0:SIGNATURE123/", "SIGNATURE123"),
        ("GET /checkout/unsubscribe/abc:DEF/", "abc:DEF"),
        ("GET /checkout/success/?session=9b2f6c1e-4d7a-4a51-8f0e-2c6b1d9e7a30 200", "9b2f6c1e-4d7a"),
        ("Cannot connect to redis://:s3cret-pass@redis.internal:6379/0: refused", "s3cret-pass"),
        ("DATABASE_URL=postgres://app:p%40ss-word@db.internal/webmagic", "p%40ss-word"),
    ],
)
def test_token_links_are_redacted(line, secret):
    assert secret not in redact(line) and "[redacted]" in redact(line)


def test_ordinary_paths_are_left_alone():
    assert redact("GET /sites/la-plumbing-pros/purchase/ 200") == "GET /sites/la-plumbing-pros/purchase/ 200"
    assert redact("http://localhost:8000/path@x and https://user@host/") == "http://localhost:8000/path@x and https://user@host/"


def test_the_logging_filter_redacts_djangos_request_lines():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Conflict: %s", ("/checkout/recover/tok:SIG/",), None)
    assert RedactTokensFilter().filter(record) is True
    assert record.getMessage() == "Conflict: /checkout/recover/[redacted]/"


@pytest.mark.django_db
def test_a_real_4xx_on_a_token_link_is_logged_without_the_token(client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        client.get("/portal/set-password/MQ/not-a-real-token-123/", HTTP_HOST="testserver")
        client.get("/checkout/recover/forged-token-XYZ/")
    handler_filter = RedactTokensFilter()
    rendered = []
    for record in caplog.records:
        handler_filter.filter(record)
        rendered.append(record.getMessage())
    assert rendered and not any("forged-token-XYZ" in line or "not-a-real-token-123" in line for line in rendered)


def test_gunicorn_access_log_atoms_are_redacted():
    class Cfg:
        def __getattr__(self, name):
            return None

    logger = GunicornLogger.__new__(GunicornLogger)
    logger.cfg = Cfg()

    class Response:
        status = "200 OK"
        sent = 10
        headers = []

    class Delta:
        seconds, microseconds = 0, 1000

    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/checkout/recover/tok:SIG/", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": "/checkout/recover/tok:SIG/", "QUERY_STRING": "session=abc-123",
               "HTTP_REFERER": "https://x/portal/verify-email/Mw/tok-9/"}
    atoms = logger.atoms(Response(), {}, environ, Delta())
    assert "SIG" not in atoms["r"] and "SIG" not in atoms["U"] and "abc-123" not in atoms["q"] and "tok-9" not in atoms["f"]
