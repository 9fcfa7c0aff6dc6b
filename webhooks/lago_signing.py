"""Lago's webhook signatures (docs/lago.md "Webhooks"), pure: what a Lago-format endpoint's receiver verifies.

Lago signs each message one of two ways, chosen per endpoint (`signature_algo`, default `jwt`), and says which in
`X-Lago-Signature-Algorithm`:
- `hmac`: `X-Lago-Signature` is base64 of HMAC-SHA256 of the body, keyed by the organization's HMAC key (its text's
  bytes);
- `jwt`: `X-Lago-Signature` is an RS256 JSON Web Token whose claims are `{"data": <the body, as text>, "iss":
  <the API's URL>}`, signed with the private half of the RSA key whose public half `GET /api/v1/webhooks/public_key`
  gives (base64 of its PEM); the receiver decodes it with that key and the issuer and compares `data` with the body.
`X-Lago-Unique-Key` names the message (the same on every attempt, so a receiver can drop repeats).

Here each tenant has its own HMAC key and RSA key (webhooks/lago_keys.py); Lago has one RSA key per installation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

ALGORITHMS = ("jwt", "hmac")
DEFAULT_ALGORITHM = "jwt"  # Lago's default
RSA_BITS = 2048
HMAC_KEY_BYTES = 32
_UNIQUE_KEYS = uuid.UUID("0b6f3c52-8d1e-5a47-b9c3-2e7d4f1a6c80")


@dataclass(frozen=True)
class LagoKeys:
    """A tenant's signing keys: the HMAC key (text, as Lago shows it) and the RSA private key (PEM)."""

    hmac_key: str
    private_pem: str


def new_keys() -> LagoKeys:
    """A fresh HMAC key (URL-safe text of 32 random bytes) and a fresh 2048-bit RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    return LagoKeys(hmac_key=secrets.token_urlsafe(HMAC_KEY_BYTES), private_pem=pem)


def public_pem(keys: LagoKeys) -> bytes:
    """The public half of the RSA key, PEM (SubjectPublicKeyInfo), as `jwt.decode` takes it."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(keys.private_pem.encode(), password=None)
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip


def public_key_text(keys: LagoKeys) -> str:
    """What Lago's public key routes answer: base64 of the public key's PEM (the SDK decodes it)."""
    return base64.b64encode(public_pem(keys)).decode()


def hmac_signature(hmac_key: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(hmac_key.encode(), body, hashlib.sha256).digest()).decode()


def jwt_signature(private_pem: str, issuer: str, body: bytes) -> str:
    import jwt

    return jwt.encode({"data": body.decode(), "iss": issuer}, private_pem, algorithm="RS256")


def unique_key(event_id: str, endpoint_id: str) -> str:
    """`X-Lago-Unique-Key`: a UUID (Lago's form) naming one event's message to one endpoint, on every attempt."""
    return str(uuid.uuid5(_UNIQUE_KEYS, f"{event_id}/{endpoint_id}"))


def sign_headers(algorithm: str, keys: LagoKeys, issuer: str, unique_key: str, body: bytes) -> dict[str, str]:
    """The headers of one Lago-format message."""
    if algorithm == "hmac":
        signature = hmac_signature(keys.hmac_key, body)
    elif algorithm == "jwt":
        signature = jwt_signature(keys.private_pem, issuer, body)
    else:
        raise ValueError(f"signature_algo: one of {', '.join(ALGORITHMS)} (got {algorithm!r})")
    return {"X-Lago-Signature": signature, "X-Lago-Signature-Algorithm": algorithm, "X-Lago-Unique-Key": unique_key}


__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "LagoKeys", "hmac_signature", "jwt_signature", "new_keys",
           "public_key_text", "public_pem", "sign_headers", "unique_key"]  # fmt: skip
