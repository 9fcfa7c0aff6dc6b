"""parse -> dedup -> rate on a plain dict state, including the states a crash can leave behind."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from meterstream.processor.step import Kind, Position, Priced, commit, evaluate, process
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")
WINDOW = 35 * 86_400_000


def ev(
    i: str,
    q: str,
    customer: str = "c1",
    meter: str = "api_calls",
    tenant: str = "t1",
    t: str = "2026-10-05T00:00:00Z",
):
    return orjson.dumps({"id": i, "tenant": tenant, "customer": customer, "meter": meter, "quantity": q, "time": t})


def run(state: dict, value: bytes, offset: int, partition: int = 0):
    return process(CATALOG, state, value, Position("usage", partition, offset, b"k"), 1_000, WINDOW)


def test_graduated_deltas_by_hand() -> None:
    # tiers: 0-10 free, 10-100 at 0.5, above at 0.25. Events 8, 5, 100 -> cumulative 8, 13, 113.
    state: dict = {}
    amounts = [Decimal(run(state, ev(f"e{i}", q), i).rated["amount"]) for i, q in enumerate(["8", "5", "100"])]
    assert amounts == [Decimal("0"), Decimal("1.5"), Decimal("46.75")]  # 3*0.5; 87*0.5 + 13*0.25
    assert sum(amounts) == Decimal("48.25")


def test_duplicate_is_dropped_and_not_charged() -> None:
    state: dict = {}
    first = run(state, ev("e1", "20"), 0)
    dup = run(state, ev("e1", "20"), 1)
    assert first.kind is Kind.RATED and dup.kind is Kind.DUPLICATE and dup.rated is None
    nxt = run(state, ev("e2", "10"), 2)
    assert nxt.rated["cumulative"] == "30" and Decimal(nxt.rated["amount"]) == Decimal("5")


def test_replay_of_a_committed_position_emits_and_writes_nothing() -> None:
    """The shared step serves engines that commit state with the input offset: a replay's output was delivered."""
    state: dict = {}
    first = run(state, ev("e1", "20"), 0)
    after = dict(state)
    again = run(state, ev("e1", "20"), 0)  # same position
    assert first.kind is Kind.RATED and first.rated["cumulative"] == "20"
    assert again == (Kind.REPLAYED, None, None) and state == after


def test_state_holds_dedup_position_and_running_total_only() -> None:
    """No engine-specific replay data in the shared state: the dedup entry is {"p", "o", "t"}."""
    state: dict = {}
    run(state, ev("e1", "20"), 4, partition=2)
    assert state == {
        "d|t1\x1fe1": {"p": 2, "o": 4, "t": 1_000},
        "c|t1\x1fc1\x1fapi_calls\x1f2026-10": ["20", 4],
    }


def test_evaluate_reads_and_commit_writes() -> None:
    state: dict = {}
    priced = evaluate(CATALOG, state, ev("e1", "20"), Position("usage", 0, 0, b"k"), 1_000, WINDOW)
    assert isinstance(priced, Priced) and state == {}  # nothing written yet
    assert priced.dkey == "d|t1\x1fe1" and priced.writes == [("c|t1\x1fc1\x1fapi_calls\x1f2026-10", ["20", 0])]
    out = commit(state, priced, Position("usage", 0, 0, b"k"), 1_000)
    assert out.kind is Kind.RATED and Decimal(out.rated["amount"]) == Decimal("5")  # 20 calls: 10 free, 10 at 0.5
    assert state["d|t1\x1fe1"] == {"p": 0, "o": 0, "t": 1_000}


def test_keep_output_is_gone() -> None:
    with pytest.raises(TypeError):  # the former keep_output slot: time_window is keyword-only now
        process(CATALOG, {}, ev("e1", "1"), Position("usage", 0, 0, b"k"), 1_000, WINDOW, True)  # type: ignore[misc]


def test_nothing_landed_reprocessing_is_deterministic() -> None:
    state: dict = {}
    run(state, ev("e1", "20"), 0)
    before = dict(state)
    out1 = run(state, ev("e2", "30"), 1)
    out2 = run(before, ev("e2", "30"), 1)
    assert out1.rated == out2.rated and out2.kind is Kind.RATED


@pytest.mark.parametrize(
    ("value", "field", "stage"),
    [
        (b"{oops", "$", "parse"),
        (
            orjson.dumps(
                {
                    "id": "x",
                    "tenant": "t1",
                    "meter": "api_calls",
                    "quantity": "1",
                    "time": "2026-10-05T00:00:00Z",
                }
            ),
            "customer",
            "parse",
        ),
        (ev("x", "1", tenant="nobody"), "customer", "rate"),
        (ev("x", "1", meter="sms"), "meter", "rate"),
    ],
)
def test_dead_letters_name_field_and_keep_raw(value: bytes, field: str, stage: str) -> None:
    state: dict = {}
    out = run(state, value, 7)
    assert out.kind is Kind.DEAD_LETTER
    dl = out.dead_letter
    assert (dl["field"], dl["stage"], dl["offset"]) == (field, stage, 7)
    assert dl["raw"] == value.decode(errors="replace") and dl["reason"]
    assert not state  # a refused event leaves no state: a re-drive after a fix is charged once


def test_periods_and_customers_are_separate() -> None:
    state: dict = {}
    run(state, ev("a", "50", t="2026-10-31T23:59:59.999Z"), 0)
    nov = run(state, ev("b", "50", t="2026-11-01T00:00:00Z"), 1)
    other = run(state, ev("c", "50", customer="c2"), 2)
    assert nov.rated["period"] == "2026-11" and nov.rated["cumulative"] == "50"
    assert other.rated["cumulative"] == "50"


def test_a_refused_event_keeps_the_id_it_names() -> None:
    """A parse-stage dead letter names the event when the JSON object has a usable id (an audit's `extra` field made
    `dlq list` show EVENT ID '-' although the id was right there); none when there is no such id."""
    extra = orjson.loads(ev("k-2", "1")) | {"extra": {"x": 1}}
    out = run({}, orjson.dumps(extra), 0)
    assert out.kind is Kind.DEAD_LETTER
    dl = out.dead_letter
    assert (dl["stage"], dl["field"], dl["event_id"], dl["tenant"]) == ("parse", "extra", "k-2", None)
    for value in (b"{not json", b"[1, 2]", orjson.dumps({"id": 7, "x": 1}), orjson.dumps({"id": "x" * 257})):
        assert run({}, value, 1).dead_letter["event_id"] is None
