"""How Recurrente can fail a call, as `responses` answers (keyword arguments for `add`), shared by
the tests of every call whose outcome may be unknown (refunds, cancelling hosting).

`never_sent`: the request certainly never left (what requests raises when urllib3 could not open
the connection, as in production). `maybe_acted`: it may have reached Recurrente and been acted
on, but its answer was lost."""

import socket

import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError


def connection_error(reason, path: str = "/api") -> requests.ConnectionError:
    return requests.ConnectionError(MaxRetryError(None, path, reason))


def never_sent(path: str = "/api") -> dict[str, dict]:
    return {
        "connect timeout": {"body": requests.ConnectTimeout("connect timed out")},
        "connection refused": {"body": connection_error(NewConnectionError(None, "[Errno 111] Connection refused"), path)},
        "dns": {"body": connection_error(NameResolutionError("app.recurrente.com", None, socket.gaierror(-2, "not known")), path)},
    }


def maybe_acted(redirect_to: str = "https://elsewhere.example/") -> dict[str, dict]:
    return {
        "read timeout": {"body": requests.ReadTimeout("read timed out")},
        "dropped after sending": {"body": requests.ConnectionError(
            ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")))},
        "500": {"status": 500, "json": {"message": "Internal server error"}},
        "502": {"status": 502, "body": "<html>Bad gateway</html>", "content_type": "text/html"},
        "503": {"status": 503, "json": {"message": "unavailable"}},
        "redirect": {"status": 302, "headers": {"Location": redirect_to}},
    }
