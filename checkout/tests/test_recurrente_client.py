"""The Recurrente client against an HTTP-level fake (responses) answering with the fixtures' shapes."""

import json
import socket
import threading

import pytest
import requests
import responses

from checkout.recurrente import (
    RecurrenteAuthError,
    RecurrenteClient,
    RecurrenteError,
    RecurrenteNotFound,
    RecurrenteNotSent,
    RecurrenteRedirect,
    RecurrenteUnavailable,
    RecurrenteValidationError,
)
from checkout.tests.fixtures import recurrente_fixture

BASE = "https://recurrente.test/api"


@pytest.fixture
def client():
    return RecurrenteClient(base_url=BASE, secret_key="sk_test_secret", public_key="pk_test_public", timeout=(1, 2))


@responses.activate
def test_create_checkout_sends_keys_and_payload_and_returns_id_and_url(client):
    responses.post(f"{BASE}/checkouts", json=recurrente_fixture("api/create_checkout.response.json"), status=201)
    payload = recurrente_fixture("api/create_checkout.purchase.request.json")
    result = client.create_checkout(payload)
    assert result["id"] == "ch_8kq3vx2pmt7w1nza"
    assert result["checkout_url"].endswith("/checkout-session/ch_8kq3vx2pmt7w1nza")
    sent = responses.calls[0].request
    assert sent.headers["X-SECRET-KEY"] == "sk_test_secret"
    assert sent.headers["X-PUBLIC-KEY"] == "pk_test_public"
    assert json.loads(sent.body) == payload


@responses.activate
def test_get_checkout_and_subscription(client):
    responses.get(f"{BASE}/checkouts/ch_8kq3vx2pmt7w1nza", json=recurrente_fixture("api/get_checkout.paid.response.json"))
    responses.get(f"{BASE}/subscriptions/su_9xk2p7qv", json=recurrente_fixture("api/get_subscription.response.json"))
    assert client.get_checkout("ch_8kq3vx2pmt7w1nza")["status"] == "paid"
    assert client.get_subscription("su_9xk2p7qv")["current_period_end"].startswith("2026-12-21")


@responses.activate
def test_cancel_subscription_uses_delete(client):
    responses.delete(f"{BASE}/subscriptions/su_9xk2p7qv", json=recurrente_fixture("api/cancel_subscription.response.json"))
    assert client.cancel_subscription("su_9xk2p7qv")["message"] == "Suscripción cancelada"
    assert responses.calls[0].request.method == "DELETE"


@responses.activate
def test_refund_sends_the_id_it_has(client):
    responses.post(f"{BASE}/refunds", json={"id": "re_1", "status": "pending"}, status=201)
    client.create_refund(intent_id="in_y7c2p4lq")
    client.create_refund(payment_intent_id="pa_ttr2w9xk")
    assert json.loads(responses.calls[0].request.body) == {"intent_id": "in_y7c2p4lq"}
    assert json.loads(responses.calls[1].request.body) == {"payment_intent_id": "pa_ttr2w9xk"}


@responses.activate
@pytest.mark.parametrize(
    "status, body, error",
    [
        (401, "api/error.401.response.json", RecurrenteAuthError),
        (422, "api/error.422.response.json", RecurrenteValidationError),
        (404, None, RecurrenteNotFound),
        (500, None, RecurrenteUnavailable),
        (503, None, RecurrenteUnavailable),
        (418, None, RecurrenteError),
    ],
)
def test_error_statuses_raise_typed_errors(client, status, body, error):
    kwargs = {"json": recurrente_fixture(body)} if body else {"body": "<html>oops</html>"}
    responses.post(f"{BASE}/checkouts", status=status, **kwargs)
    with pytest.raises(error) as info:
        client.create_checkout({"items": []})
    assert info.value.status == status


@responses.activate
def test_422_keeps_recurrentes_field_errors(client):
    responses.post(f"{BASE}/checkouts", status=422, json=recurrente_fixture("api/error.422.response.json"))
    with pytest.raises(RecurrenteValidationError) as info:
        client.create_checkout({"items": []})
    assert info.value.errors == {"items": ["no puede estar en blanco"]}


@responses.activate
@pytest.mark.parametrize("exc", [requests.ConnectTimeout, requests.ReadTimeout, requests.ConnectionError])
def test_timeouts_and_connection_errors_are_unavailable(client, exc):
    responses.post(f"{BASE}/checkouts", body=exc("boom"))
    with pytest.raises(RecurrenteUnavailable):
        client.create_checkout({"items": []})


@responses.activate
def test_success_without_id_is_an_error(client):
    responses.post(f"{BASE}/checkouts", status=201, json={"unexpected": True})
    with pytest.raises(RecurrenteError):
        client.create_checkout({"items": []})


def test_timeouts_are_always_passed(client, monkeypatch):
    seen = {}

    def fake_request(method, url, **kwargs):
        seen.update(kwargs)
        raise requests.ReadTimeout()

    monkeypatch.setattr(client.session, "request", fake_request)
    with pytest.raises(RecurrenteUnavailable):
        client.get_checkout("ch_1")
    assert seen["timeout"] == (1, 2)


def test_ids_cannot_change_the_url_path(client):
    with pytest.raises(ValueError):
        client.get_checkout("../refunds")


@responses.activate
def test_secret_key_never_reaches_the_logs(client, caplog):
    responses.post(f"{BASE}/checkouts", status=401, json=recurrente_fixture("api/error.401.response.json"))
    with pytest.raises(RecurrenteAuthError):
        client.create_checkout({"items": []})
    assert caplog.records
    assert "sk_test_secret" not in caplog.text


def test_recurrente_times_are_always_aware():
    from datetime import UTC, datetime

    from checkout.recurrente import recurrente_time

    assert recurrente_time("2026-11-20T10:14:05.398-06:00") == datetime(2026, 11, 20, 16, 14, 5, 398000, tzinfo=UTC)
    assert recurrente_time("2026-11-20T10:14:05") == datetime(2026, 11, 20, 10, 14, 5, tzinfo=UTC)  # no offset: UTC
    assert recurrente_time("2026-13-45T99:00:00") is None and recurrente_time(None) is None and recurrente_time(5) is None


# --- Redirects are never followed -----------------------------------------------------------------

@responses.activate
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_never_followed_and_raises(client, caplog, status):
    responses.post(f"{BASE}/refunds", status=status, headers={"Location": "https://collector.example/steal"})
    elsewhere = [responses.post("https://collector.example/steal"), responses.get("https://collector.example/steal")]
    with pytest.raises(RecurrenteRedirect) as info:
        client.create_refund(payment_intent_id="pa_ttr2w9xk")
    assert info.value.status == status
    assert len(responses.calls) == 1 and all(target.call_count == 0 for target in elsewhere)
    assert "collector.example" in caplog.text and "sk_test_secret" not in caplog.text


def test_every_call_asks_requests_not_to_follow_redirects(client, monkeypatch):
    seen = []

    def fake_request(method, url, **kwargs):
        seen.append((method, kwargs.get("allow_redirects")))
        raise requests.ReadTimeout()

    monkeypatch.setattr(client.session, "request", fake_request)
    calls = [
        lambda: client.create_checkout({"items": []}), lambda: client.get_checkout("ch_1"),
        lambda: client.get_subscription("su_1"), lambda: client.cancel_subscription("su_1"),
        lambda: client.create_refund(payment_intent_id="pa_1"), lambda: client.get_refund("re_1"),
    ]
    for call in calls:
        with pytest.raises(RecurrenteUnavailable):
            call()
    assert seen == [(m, False) for m in ("POST", "GET", "GET", "DELETE", "POST", "GET")]


# --- Not sent, or maybe acted on ------------------------------------------------------------------
# A call that moves money needs to know whether Recurrente can have seen it: only a connection that
# was never made (refused, DNS, connect timeout) is RecurrenteNotSent.

def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_connection_is_not_sent():
    local = RecurrenteClient(base_url=f"http://127.0.0.1:{_closed_port()}/api", secret_key="sk_test_secret")
    with pytest.raises(RecurrenteNotSent):
        local.create_refund(payment_intent_id="pa_ttr2w9xk")


def test_a_connection_dropped_after_sending_may_have_been_acted_on():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received = []

    def hang_up():
        conn, _ = server.accept()
        received.append(conn.recv(65536))  # Recurrente got the request, then the line dropped
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    local = RecurrenteClient(base_url=f"http://127.0.0.1:{server.getsockname()[1]}/api", secret_key="sk_test_secret")
    try:
        with pytest.raises(RecurrenteUnavailable) as info:
            local.create_refund(payment_intent_id="pa_ttr2w9xk")
    finally:
        thread.join(5)
        server.close()
    assert b"POST /api/refunds" in received[0]
    assert not isinstance(info.value, RecurrenteNotSent)


def _dns_failure() -> requests.ConnectionError:
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    reason = NameResolutionError("app.recurrente.com", None, socket.gaierror(-2, "Name or service not known"))
    return requests.ConnectionError(MaxRetryError(None, "/api/refunds", reason))


@responses.activate
@pytest.mark.parametrize("fault, not_sent", [
    (requests.ConnectTimeout("connect timed out"), True),
    ("dns", True),
    (requests.ReadTimeout("read timed out"), False),
    (requests.ConnectionError("Connection aborted."), False),
])
def test_which_failures_are_certainly_not_sent(client, fault, not_sent):
    responses.post(f"{BASE}/refunds", body=_dns_failure() if fault == "dns" else fault)
    with pytest.raises(RecurrenteUnavailable) as info:
        client.create_refund(payment_intent_id="pa_ttr2w9xk")
    assert isinstance(info.value, RecurrenteNotSent) is not_sent
