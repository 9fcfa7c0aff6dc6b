"""The faust engine's table after sessions are held then released by their missing record: a released session's held
key (`h|held|...`, processor/sessions.py) is deleted (a tombstone), not kept as the JSON value null for ever
(faust stores a write of None as `null`; `faust_engine.TableState` turns it into a delete)."""

from __future__ import annotations

from test_sessions import CATALOG, NOW, WINDOW, record

import meterstream.processor.faust_engine as fe
from meterstream.processor.step import Kind, Position


def run(state, value: bytes, offset: int):
    return fe.process_replayable(CATALOG, state, value, Position("usage", 0, offset, None, NOW), NOW, WINDOW)


def held_then_released(state) -> None:
    for i in range(3):
        assert run(state, record(f"e{i}-2", 2, "60", session=f"c{i}", customer="line-1"), 2 * i).kind is Kind.HELD
        assert run(state, record(f"e{i}-1", 1, "30", session=f"c{i}", customer="line-1"), 2 * i + 1).kind is Kind.RATED


def test_released_sessions_leave_no_held_key() -> None:
    table: dict = {}
    held_then_released(fe.TableState(table))  # the engine's view of its table
    assert [k for k in table if k.startswith("s|")]  # the sessions themselves are kept (closed)
    assert [k for k in table if k.startswith("h|held|")] == []
