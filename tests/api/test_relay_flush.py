"""Entity writes are answered only after the relay put them on the `entities` topic (api/relay_flush.py): a
successful write (POST/PUT/DELETE) that is not event ingestion waits for `relay.flush`; reads, refused writes
and event ingestion do not. The relay here is a stand-in that records what the outbox held when it was asked
to flush, so the test sees that the flush came after the write committed and before the answer."""

from __future__ import annotations

from pathlib import Path

from api_helpers import offline_app
from fastapi.testclient import TestClient

from meterstream.entities import outbox


class _Relay:
    def __init__(self, sessions) -> None:
        self.sessions = sessions
        self.flushed_at: list[int] = []  # the outbox's last seq at each flush

    def flush(self, timeout: float = 10.0) -> bool:
        self.flushed_at.append(outbox.last_seq(self.sessions))
        return True

    def stop(self) -> None:
        pass


def test_writes_wait_for_the_relay_reads_refusals_and_events_do_not(tmp_path: Path) -> None:
    app = offline_app(tmp_path, relay=False)
    with TestClient(app) as client:
        relay = app.state.relay = _Relay(app.state.sessions)
        _info, token = app.state.keys.create("acme", "admin", "test")
        auth = {"Authorization": f"Bearer {token}"}
        r = client.post("/v1/customers", json={"external_id": "org-1", "name": "Org One"}, headers=auth)
        assert r.status_code == 201
        assert relay.flushed_at == [outbox.last_seq(app.state.sessions)] and relay.flushed_at[0] > 0
        assert client.get("/v1/customers/org-1", headers=auth).status_code == 200  # a read: no flush
        bad = client.post("/v1/customers", json={"external_id": "org-2"}, headers=auth)  # no name: refused
        assert bad.status_code == 422
        assert client.post("/v1/events", json=[], headers=auth).status_code in (400, 403, 422)  # ingestion path
        assert len(relay.flushed_at) == 1
        r = client.put("/v1/customers/org-1", json={"external_id": "org-1", "name": "Org 1"}, headers=auth)
        assert r.status_code == 200 and len(relay.flushed_at) == 2
    app.state.engine.dispose()
