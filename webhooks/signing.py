"""Standard Webhooks signatures (https://www.standardwebhooks.com, symmetric `v1`): sign and verify (pure).

A message carries three headers:
- `webhook-id`: the event id (the same on every retry, so a receiver can drop duplicates);
- `webhook-timestamp`: integer seconds since the epoch when this attempt was sent;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, space-separated when several
  secrets sign (rotation); a receiver accepts the message when any `v1` signature matches.

The secret is `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes (not the text).
A receiver also refuses a timestamp more than `tolerance` seconds away from its clock (replay protection).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping

PREFIX = "whsec_"
SECRET_BYTES = 32
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A message that does not verify; the message says which check failed."""


def new_secret() -> str:
    """A fresh endpoint secret: `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (the prefix is optional). ValueError naming `secret` when it is not
    base64 or decodes to fewer than 16 bytes."""
    raw = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret: not base64 after the whsec_ prefix") from None
    if len(key) < 16:
        raise ValueError(f"secret: {len(key)} bytes, at least 16 wanted (whsec_ + base64 of 24-64 random bytes)")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`."""
    if not isinstance(timestamp, int):
        raise TypeError("timestamp: integer seconds since the epoch")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a received message; returns its `webhook-id`. SignatureError when a header is missing, the
    timestamp is not an integer or is more than `tolerance` seconds from `now`, or no `v1` signature matches."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, given = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not msg_id or not stamp or not given:
        raise SignatureError("missing header: webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"webhook-timestamp: not integer seconds ({stamp!r})") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"webhook-timestamp: {timestamp} is more than {tolerance} s from now ({int(current)})")
    expected = signature(secret, msg_id, timestamp, body).encode()
    for candidate in given.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise SignatureError("webhook-signature: no v1 signature matches")


__all__ = ["PREFIX", "TOLERANCE_SECONDS", "SignatureError", "new_secret", "secret_key", "sign_headers", "signature",
           "verify"]  # fmt: skip
