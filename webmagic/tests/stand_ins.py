"""Brevo and Recurrente as real HTTP servers on 127.0.0.1, for fault tests whose worker is a real
process (the in-process `responses` fakes cannot reach it).

Each stand-in records what it was asked, can be told to hold its answer to the next request (as a
provider that hangs does) until the test releases it, and answers with payloads shaped like the real ones:
Brevo's transactional send, which delivers once per `idempotencyKey`, and Recurrente's
`GET /subscriptions/{id}` from ../shared/recurrente/ (via checkout/tests/fixtures)."""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .fake_brevo import FakeBrevo


class StandIn:
    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        self.hold_next = 0
        self.held = threading.Event()  # set when a request is being held
        self.release = threading.Event()
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def handle(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        """The answer, after holding it if told to: what the provider did happened (an email was
        delivered), only its answer is late, as when the caller dies waiting for it."""
        with self.lock:
            self.requests.append((method, path, body))
            answer = self.answer(method, path, body)
            hold = self.hold_next > 0
            if hold:
                self.hold_next -= 1
        if hold:
            self.held.set()
            self.release.wait(60)
        return answer


class BrevoStandIn(StandIn):
    """Brevo's transactional send over real HTTP, with fake_brevo.FakeBrevo's behaviour."""

    def __init__(self):
        super().__init__()
        self.brevo = FakeBrevo()

    @property
    def delivered(self) -> list[dict]:
        return self.brevo.delivered

    def answer(self, method, path, body):
        if method != "POST" or not path.rstrip("/").endswith("/smtp/email"):
            return 404, {"message": "not found"}
        return self.brevo.accept(body)


class RecurrenteStandIn(StandIn):
    def __init__(self, subscriptions: dict[str, dict] | None = None):
        super().__init__()
        self.subscriptions = subscriptions or {}

    def answer(self, method, path, body):
        parts = path.strip("/").split("/")
        if method == "GET" and len(parts) >= 2 and parts[-2] == "subscriptions" and parts[-1] in self.subscriptions:
            return 200, self.subscriptions[parts[-1]]
        return 404, {"error": "Not found"}


def _handler_for(stand_in: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            status, payload = stand_in.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the caller is gone (a killed worker)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def serving(stand_in: StandIn):
    """Serve the stand-in on a free port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(stand_in))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stand_in.release.set()
        server.shutdown()
        server.server_close()
