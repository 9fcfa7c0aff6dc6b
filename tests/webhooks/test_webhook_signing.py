"""Standard Webhooks signatures: the spec's published test vector, verification's refusals, and our headers
verified by the reference library (standardwebhooks, the spec's own Python package)."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from meterstream.webhooks.signing import SignatureError, new_secret, secret_key, sign_headers, signature, verify

# The published vector (standard-webhooks repository, libraries/python/tests/test_webhooks.py test_sign_function).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_published_vector() -> None:
    assert signature(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED
    assert signature(SECRET.removeprefix("whsec_"), MSG_ID, TIMESTAMP, BODY) == EXPECTED  # prefix optional
    headers = sign_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    assert headers == {"webhook-id": MSG_ID, "webhook-timestamp": "1614265330", "webhook-signature": EXPECTED}


def test_verify_accepts_the_vector_and_refuses_each_tampering() -> None:
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": EXPECTED}
    assert verify(SECRET, headers, BODY, now=TIMESTAMP + 10) == MSG_ID
    assert verify(SECRET, {k.title(): v for k, v in headers.items()}, BODY, now=TIMESTAMP) == MSG_ID  # any case
    # rotation: several signatures, one matches
    several = {**headers, "webhook-signature": f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {EXPECTED}"}
    assert verify(SECRET, several, BODY, now=TIMESTAMP) == MSG_ID
    cases = {
        "body": (SECRET, headers, b'{"test": 2432232315}', TIMESTAMP),
        "secret": (new_secret(), headers, BODY, TIMESTAMP),
        "id": (SECRET, {**headers, "webhook-id": "msg_other"}, BODY, TIMESTAMP),
        "too old": (SECRET, headers, BODY, TIMESTAMP + 301),
        "too new": (SECRET, headers, BODY, TIMESTAMP - 301),
        "v2 only": (SECRET, {**headers, "webhook-signature": "v2," + EXPECTED[3:]}, BODY, TIMESTAMP),
        "missing": (SECRET, {"webhook-id": MSG_ID, "webhook-signature": EXPECTED}, BODY, TIMESTAMP),
        "not a number": (SECRET, {**headers, "webhook-timestamp": "soon"}, BODY, TIMESTAMP),
    }
    for name, (secret, hdrs, body, now) in cases.items():
        with pytest.raises(SignatureError):
            verify(secret, hdrs, body, now=now)
            pytest.fail(f"{name}: verified")


def test_new_secrets_are_32_random_bytes_and_bad_secrets_are_refused() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32 == len(secret_key(a))
    with pytest.raises(ValueError, match="secret: not base64"):
        secret_key("whsec_not base64!")
    with pytest.raises(ValueError, match="at least 16"):
        secret_key("whsec_" + base64.b64encode(b"short").decode())


def test_the_reference_library_verifies_our_headers() -> None:
    secret = new_secret()
    body = b'{"id":"msg_1","type":"invoice.finalized","data":{"total":"120.00"}}'
    headers = sign_headers(secret, "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"id": "msg_1", "type": "invoice.finalized",
                                                     "data": {"total": "120.00"}}  # fmt: skip
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
