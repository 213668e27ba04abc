import pytest

from webmagic.webhook_signing import SignatureError, sign, signed_headers, verify

# Svix's official test vector (also in the project's README).
VECTOR = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": "1614265330",
    "body": b'{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
OTHER_SECRET = "whsec_" + "c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="


def vector_headers(prefix="svix-", signature=VECTOR["signature"]):
    return {f"{prefix}id": VECTOR["id"], f"{prefix}timestamp": VECTOR["timestamp"], f"{prefix}signature": signature}


def test_signer_reproduces_the_official_vector():
    assert sign(secret=VECTOR["secret"], msg_id=VECTOR["id"], timestamp=VECTOR["timestamp"], body=VECTOR["body"]) == VECTOR["signature"]


@pytest.mark.parametrize("prefix", ["svix-", "webhook-"])
def test_verifier_accepts_the_official_vector_with_either_header_prefix(prefix):
    now = int(VECTOR["timestamp"]) + 10
    assert verify(headers=vector_headers(prefix), body=VECTOR["body"], secrets=[VECTOR["secret"]], now=now) == VECTOR["id"]


def test_any_configured_secret_may_match_during_rotation():
    now = int(VECTOR["timestamp"])
    assert verify(headers=vector_headers(), body=VECTOR["body"], secrets=[OTHER_SECRET, VECTOR["secret"]], now=now)


def test_any_signature_in_the_header_may_match():
    now = int(VECTOR["timestamp"])
    header = "v1,bm90LXRoZS1yaWdodC1zaWduYXR1cmU= v2,whatever " + VECTOR["signature"]
    assert verify(headers=vector_headers(signature=header), body=VECTOR["body"], secrets=[VECTOR["secret"]], now=now)


@pytest.mark.parametrize(
    "headers, body, secrets, now, reason",
    [
        (vector_headers(), VECTOR["body"], [OTHER_SECRET], 1614265330, "no signature matches"),
        (vector_headers(), b'{"test": 2432232315}', [VECTOR["secret"]], 1614265330, "no signature matches"),
        (vector_headers(), VECTOR["body"], [VECTOR["secret"]], 1614265330 + 301, "tolerance"),
        (vector_headers(), VECTOR["body"], [VECTOR["secret"]], 1614265330 - 301, "tolerance"),
        (vector_headers(), VECTOR["body"], [], 1614265330, "no webhook secret"),
        ({}, VECTOR["body"], [VECTOR["secret"]], 1614265330, "missing"),
        ({**vector_headers(), "svix-timestamp": "16142x5330"}, VECTOR["body"], [VECTOR["secret"]], 1614265330, "malformed timestamp"),
        (vector_headers(signature="v1,@@not-base64@@"), VECTOR["body"], [VECTOR["secret"]], 1614265330, "well-formed"),
        (vector_headers(signature="v0,g0hM9SsE"), VECTOR["body"], [VECTOR["secret"]], 1614265330, "well-formed"),
        ({**vector_headers(), "svix-id": "msg\nbad"}, VECTOR["body"], [VECTOR["secret"]], 1614265330, "malformed message id"),
    ],
)
def test_bad_deliveries_are_refused(headers, body, secrets, now, reason):
    with pytest.raises(SignatureError, match=reason):
        verify(headers=headers, body=body, secrets=secrets, now=now)


def test_signed_headers_verify_round_trip():
    headers = signed_headers(secret=OTHER_SECRET, msg_id="msg_abc", body=b"{}", timestamp=1_700_000_000)
    assert verify(headers=headers, body=b"{}", secrets=[OTHER_SECRET], now=1_700_000_100) == "msg_abc"


@pytest.mark.parametrize(
    "headers, body, secrets, now, reason, status",
    [
        (vector_headers(), VECTOR["body"], [OTHER_SECRET], 1614265330, "bad_signature", 401),
        (vector_headers(), VECTOR["body"], [], 1614265330, "no_secret", 401),
        (vector_headers(), VECTOR["body"], ["whsec_%%%"], 1614265330, "no_secret", 401),
        ({}, VECTOR["body"], [VECTOR["secret"]], 1614265330, "missing_headers", 400),
        ({**vector_headers(), "svix-timestamp": "16142x5330"}, VECTOR["body"], [VECTOR["secret"]], 1614265330, "missing_headers", 400),
        (vector_headers(signature="v0,g0hM9SsE"), VECTOR["body"], [VECTOR["secret"]], 1614265330, "missing_headers", 400),
        ({**vector_headers(), "svix-id": "msg\nbad"}, VECTOR["body"], [VECTOR["secret"]], 1614265330, "missing_headers", 400),
        (vector_headers(), VECTOR["body"], [VECTOR["secret"]], 1614265330 + 301, "stale_timestamp", 400),
        (vector_headers(), VECTOR["body"], [VECTOR["secret"]], 1614265330 - 301, "future_timestamp", 400),
    ],
)
def test_each_refusal_carries_a_typed_reason_and_status(headers, body, secrets, now, reason, status):
    with pytest.raises(SignatureError) as refused:
        verify(headers=headers, body=body, secrets=secrets, now=now)
    assert (refused.value.reason, refused.value.status) == (reason, status)


def test_the_tolerance_passed_in_is_the_one_used():
    now = int(VECTOR["timestamp"]) + 100
    assert verify(headers=vector_headers(), body=VECTOR["body"], secrets=[VECTOR["secret"]], now=now, tolerance=100)
    with pytest.raises(SignatureError) as refused:
        verify(headers=vector_headers(), body=VECTOR["body"], secrets=[VECTOR["secret"]], now=now + 1, tolerance=100)
    assert refused.value.reason == "stale_timestamp"
