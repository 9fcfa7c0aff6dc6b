"""Bearer keys: missing/unknown/revoked -> 401, roles -> 403; keys made and revoked by the CLI while the API runs."""

from __future__ import annotations

import hashlib
import os

import orjson
import pytest
from api_helpers import bearer, event

from meterstream.deploy.cli import main
from meterstream.entities.keys import PREFIX

pytestmark = pytest.mark.kafka


def _post(client, headers):  # type: ignore[no-untyped-def]
    return client.post("/v1/events", content=orjson.dumps(event("a1")), headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {PREFIX}0123456789abcdef.wrongsecret"},
    ],
)
def test_missing_or_unknown_keys_are_401(client, headers) -> None:
    r = _post(client, headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_a_known_key_id_with_a_wrong_secret_is_401(client) -> None:
    good = bearer(client)["Authorization"]
    key_id = good.removeprefix(f"Bearer {PREFIX}").split(".")[0]
    assert _post(client, {"Authorization": f"Bearer {PREFIX}{key_id}.AAAA"}).status_code == 401
    assert _post(client, {"Authorization": good}).status_code == 200


def test_roles(client) -> None:
    read, ingest, admin = bearer(client, role="read"), bearer(client, role="ingest"), bearer(client, role="admin")
    r = _post(client, read)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert _post(client, ingest).status_code == 200
    assert _post(client, admin).status_code == 200  # admin may do everything
    assert client.get("/v1/usage", headers=ingest).status_code == 403


def test_cli_keys_work_while_the_api_runs_and_revoking_is_immediate(client, api_settings, monkeypatch, capsys) -> None:
    for k in [k for k in os.environ if k.startswith("METERSTREAM_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("METERSTREAM_HOME", str(api_settings.home))  # the same SQLite file as the app
    assert main(["keys", "create", "--tenant", "acme", "--role", "ingest", "--name", "cli"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    token = out[-1]
    assert token.startswith(PREFIX) and " " not in token
    auth = {"Authorization": f"Bearer {token}"}
    assert _post(client, auth).status_code == 200

    assert main(["keys", "list", "--tenant", "acme"]) == 0
    listing = capsys.readouterr().out
    key_id = token.removeprefix(PREFIX).split(".")[0]
    assert key_id in listing and token.split(".")[1] not in listing  # the secret is never printed again

    assert main(["keys", "revoke", key_id]) == 0
    capsys.readouterr()
    r = _post(client, auth)
    assert r.status_code == 401  # the very next request
    assert main(["keys", "revoke", key_id]) == 1  # already revoked


def test_secrets_are_stored_only_as_hashes(client) -> None:
    from sqlalchemy import text

    token = bearer(client)["Authorization"].removeprefix("Bearer ")
    secret = token.split(".", 1)[1]
    with client.app.state.engine.connect() as conn:
        rows = conn.execute(text("SELECT secret_hash FROM api_keys")).all()
    assert [r[0] for r in rows] == [hashlib.sha256(secret.encode()).hexdigest()]
    assert all(secret not in r[0] for r in rows)
