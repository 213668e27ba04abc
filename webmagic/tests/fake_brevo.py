"""Brevo at its HTTP boundary, for tests: the transactional email endpoint anymail calls, with the
one behaviour our retries rely on: a request whose `idempotencyKey` it has already accepted is
answered as before and not delivered again."""

import json
from dataclasses import dataclass, field

import responses

BREVO_SEND_URL = "https://api.brevo.com/v3/smtp/email"
BREVO_SETTINGS = {"EMAIL_BACKEND": "anymail.backends.brevo.EmailBackend", "ANYMAIL": {"BREVO_API_KEY": "xkeysib-test"}}


@dataclass
class FakeBrevo:
    requests: list[dict] = field(default_factory=list)
    delivered: list[dict] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    fail_next: int = 0

    def send(self, request):
        """The `responses` callback: (status, headers, body)."""
        status, answer = self.accept(json.loads(request.body))
        return status, {}, json.dumps(answer)

    def accept(self, payload: dict) -> tuple[int, dict]:
        """Brevo's answer to one send: delivered once per `idempotencyKey`, a repeat answered as
        the first was (also used by the stand-in HTTP server, stand_ins.BrevoStandIn)."""
        self.requests.append(payload)
        if self.fail_next:
            self.fail_next -= 1
            return 503, {"code": "service_unavailable", "message": "try again"}
        key = (payload.get("headers") or {}).get("idempotencyKey")
        if key and key in self.answers:
            return 201, {"messageId": self.answers[key]}
        message_id = f"<{len(self.delivered) + 1}@smtp-relay.mailin.fr>"
        self.delivered.append(payload)
        if key:
            self.answers[key] = message_id
        return 201, {"messageId": message_id}

    def delivered_to(self, address: str) -> list[dict]:
        return [p for p in self.delivered if any(to["email"] == address for to in p["to"])]


def fake_brevo_start(mocked: responses.RequestsMock) -> FakeBrevo:
    brevo = FakeBrevo()
    mocked.add_callback(responses.POST, BREVO_SEND_URL, callback=brevo.send)
    return brevo
