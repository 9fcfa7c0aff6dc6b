"""`meterstream webhooks add|list|disable|enable|deliveries|replay|events` on a SQLite store in a temp home."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from invoice_helpers import TENANT, issued

from meterstream.deploy.cli import main
from meterstream.entities.db import make_engine, session_factory
from meterstream.schemas.settings import Settings
from meterstream.webhooks.dispatcher import Dispatcher
from meterstream.webhooks.signing import verify


@pytest.fixture
def home(clean_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("METERSTREAM_HOME", str(tmp_path))
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_disable_deliveries_replay(home: Path, capsys, receiver) -> None:
    code, out, _ = run(capsys, "webhooks", "add", "--tenant", TENANT, "--url", receiver.url, "--event",
                       "invoice.finalized", "--description", "ERP")  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    endpoint_id, secret = lines[0].split()[1], lines[-1]
    assert endpoint_id.startswith("ep_") and secret.startswith("whsec_")
    assert f"-> {receiver.url} (invoice.finalized)" in lines[0]

    code, out, _ = run(capsys, "webhooks", "list", "--tenant", TENANT)
    assert code == 0 and endpoint_id in out and secret not in out and secret[:10] + "..." in out
    assert secret in run(capsys, "webhooks", "list", "--tenant", TENANT, "--show-secrets")[1]

    settings = Settings()
    sf = session_factory(make_engine(settings))
    issued(sf, "inv-1")
    receiver.statuses = [503]
    now = [datetime.now(UTC)]
    d = Dispatcher(settings, sf, kafka=False, schedule=(5.0,), jitter=0.0, now=lambda: now[0])
    try:
        d.run_once()
        now[0] += timedelta(seconds=5)
        d.run_once()  # the second and last try fails: dead
        code, out, _ = run(capsys, "webhooks", "deliveries", "--tenant", TENANT, "--status", "dead", "--json")
        (dead,) = [orjson.loads(line) for line in out.splitlines()]
        assert (dead["status"], dead["attempts"], dead["last_status"]) == ("dead", 2, 503)
        assert "HTTP 503" in run(capsys, "webhooks", "deliveries", "--tenant", TENANT)[1]

        receiver.statuses = [200]
        code, out, _ = run(capsys, "webhooks", "replay", "--tenant", TENANT)
        assert code == 0 and out.strip() == f"replaying 1 deliveries: {dead['id']}"
        now[0] = datetime.now(UTC)
        d.run_once()
    finally:
        d.stop()
    assert len(receiver.requests) == 3
    headers, body = receiver.requests[-1]
    assert verify(secret, headers, body)  # the secret printed by `add` verifies the POST
    code, out, _ = run(capsys, "webhooks", "deliveries", "--tenant", TENANT, "--json")
    assert [orjson.loads(line)["status"] for line in out.splitlines()] == ["delivered"]

    code, out, _ = run(capsys, "webhooks", "events", "--tenant", TENANT)
    assert code == 0 and "invoice.created" in out and "invoice.finalized" in out

    assert run(capsys, "webhooks", "disable", "--tenant", TENANT, endpoint_id)[1].strip() == (
        f"endpoint {endpoint_id} disabled"
    )
    assert " no " in run(capsys, "webhooks", "list", "--tenant", TENANT)[1]
    assert run(capsys, "webhooks", "enable", "--tenant", TENANT, endpoint_id)[0] == 0


def test_bad_input_names_the_field(home: Path, capsys) -> None:
    code, _, err = run(capsys, "webhooks", "add", "--tenant", TENANT, "--url", "ftp://erp.example.com/in")
    assert code == 2 and "error: url: an http:// or https:// URL" in err
    code, _, err = run(capsys, "webhooks", "disable", "--tenant", TENANT, "ep_nope")
    assert code == 2 and "no webhook endpoint 'ep_nope'" in err
    with pytest.raises(SystemExit):
        main(["webhooks", "add", "--tenant", TENANT, "--url", "https://x.example", "--event", "invoice.sent"])


def test_lago_keys_verify_what_a_lago_endpoint_gets(home: Path, capsys, receiver) -> None:
    """`webhooks lago-keys` prints the HMAC key and public key that verify a Lago-format endpoint's messages as
    Lago's documentation shows; `list` names the endpoint's format and algorithm instead of a secret."""
    import base64
    import hashlib
    import hmac

    import jwt

    from meterstream.api.compat.lago.webhooks import render
    from meterstream.webhooks import endpoints

    sf = session_factory(make_engine(Settings()))
    run(capsys, "webhooks", "list", "--tenant", TENANT)  # migrates the store
    endpoints.register_lago(sf, TENANT, receiver.url, signature_algo="hmac", event_types=["invoice.created"],
                            issuer="https://billing.example.com/compat/lago")  # fmt: skip
    jwt_receiver = receiver.url + "/jwt"
    endpoints.register_lago(sf, TENANT, jwt_receiver, event_types=["invoice.created"],
                            issuer="https://billing.example.com/compat/lago")  # fmt: skip
    code, out, _ = run(capsys, "webhooks", "list", "--tenant", TENANT)
    assert code == 0 and "lago hmac (webhooks lago-keys)" in out and "lago jwt" in out
    code, out, _ = run(capsys, "webhooks", "lago-keys", "--tenant", TENANT)
    assert code == 0
    lines = out.splitlines()
    hmac_key = lines[1]
    public_key = "\n".join(lines[3:]).encode()
    assert public_key.startswith(b"-----BEGIN PUBLIC KEY-----") and public_key.endswith(b"-----END PUBLIC KEY-----")
    assert run(capsys, "webhooks", "lago-keys", "--tenant", TENANT)[1] == out  # made once, then the same

    issued(sf, "inv-1")
    Dispatcher(Settings(), sf, kafka=False, renderers={"lago": render}).run_once()
    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        if headers["x-lago-signature-algorithm"] == "hmac":
            calc = base64.b64encode(hmac.new(hmac_key.encode(), body, hashlib.sha256).digest()).decode()
            assert headers["x-lago-signature"] == calc
        else:
            claims = jwt.decode(headers["x-lago-signature"], public_key, algorithms=["RS256"],
                                issuer="https://billing.example.com/compat/lago")  # fmt: skip
            assert claims["data"] == body.decode()
