"""The session outbox (processor/sessions.py `h|outbox`) in one batch of more than `OUTBOX_MAX` (1,000) messages.

Plan and cap of tests/processor/test_sessions_disconnect.py (disconnect at 0.20). Each of 400 sessions gets record 1
(30 s: 0.16), record 3 (60 s, held: a `session.held` note) and record 2 (45 s: records 2 and 3 released, a
`session.released` note, and 0.16 + 0.06 = 0.22 > 0.20: one `disconnect` command): 3 x 400 = 1,200 messages in one
batch. Produced by Balances (which empties the outbox every batch): all 1,200. Never taken (no Balances), the same
records in two batches (sessions 0-199, then 200-399): the first batch's 600 are left, so the second batch's cut
them to 1,000: the 200 oldest notifications dropped (sessions 0-99's held and released notes), all 400 commands
kept.
"""

from __future__ import annotations

from collections import Counter

from test_sessions import NOW, WINDOW, record
from test_sessions_disconnect import CATALOG

from meterstream.processor.balances import Balances
from meterstream.processor.live_catalog import EntityTable
from meterstream.processor.sessions import OUTBOX_KEY
from meterstream.processor.step import Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.schemas.provisioning import decode_command, decode_notification
from meterstream.schemas.rated import row_of
from meterstream.schemas.settings import Settings

SESSIONS = 400


def one_batch(state: BatchState, sessions: range = range(SESSIONS)) -> list:
    """The sessions' records (per session: 1, 3, 2) through `step.process`; the rated records."""
    rated, offset = [], 3 * sessions.start
    for i in sessions:
        for seq, quantity in ((1, "30"), (3, "60"), (2, "45")):
            value = record(f"r{i}-{seq}", seq, quantity, session=f"s{i}")
            out = process(CATALOG, state, value, Position("usage", 0, offset, None, NOW + offset), NOW, WINDOW)
            if out.rated is not None:
                rated.append(out.rated)
            offset += 1
    return rated


def test_a_batch_of_more_than_the_cap_sends_every_message(tmp_path) -> None:
    store = PartitionStore(tmp_path / "p0")
    try:
        state = BatchState(store)
        rated = one_batch(state)
        assert len(rated) == 2 * SESSIONS  # record 1, and record 2 releasing 3
        out = Balances(Settings(), EntityTable()).after_batch({0: state}, {0: [row_of(r) for r in rated]}, {}, NOW)
        state.commit(3 * SESSIONS, Counter())
        commands = [decode_command(v) for t, _, v in out if t.endswith("provisioning")]
        notes = [decode_notification(v) for t, _, v in out if t.endswith("notifications")]
        assert len(commands) == SESSIONS and {c.command for c in commands} == {"disconnect"}
        assert {c.state["session_id"] for c in commands} == {f"s{i}" for i in range(SESSIONS)}
        assert Counter(n.kind for n in notes) == {"session.held": SESSIONS, "session.released": SESSIONS}
        assert store.get(OUTBOX_KEY) is None  # taken by the batch's outputs: deleted
    finally:
        store.close()


def test_an_outbox_never_taken_drops_the_oldest_notifications_never_a_command(tmp_path) -> None:
    store = PartitionStore(tmp_path / "p0")
    try:
        state = BatchState(store)
        one_batch(state, range(200))
        state.commit(600, Counter())
        assert len(store.get(OUTBOX_KEY)[0]["out"]) == 600  # one batch's: never cut
        state = BatchState(store)
        one_batch(state, range(200, SESSIONS))
        out = state.get(OUTBOX_KEY)[0]["out"]
        assert len(out) == 1_000
        assert sum(m["topic"] == "provisioning" for m in out) == SESSIONS
        notes = [m for m in out if m["topic"] == "notifications"]
        assert len(notes) == 600 and {m["data"]["session_id"] for m in notes} == {f"s{i}" for i in range(100, 400)}
    finally:
        store.close()
