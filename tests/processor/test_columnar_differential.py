"""The columnar batch path (processor/columnar.py) against the per-message specification (`step.process`,
which prices with `rating.delta` and the telecom rater): random event sequences, cut into batches at
random points over several partitions, must give the same rated records (byte for byte, so amounts to
the last decimal), the same dead letters, the same outcome counters and the same RocksDB contents,
key by key. The columnar path's records are compared as they leave the processor: packed into JSON rows
messages (`schemas.rated.pack_rows`, a small size cap so that batches span several messages), decoded back
and encoded as the specification's JSON, every field.

Both paths run as the native engine runs them: per partition a RocksDB store, a batch buffer over it
that also reads the previous, still uncommitted batch (one batch in flight), commits in order.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.live_catalog import CatalogView, EntityTable
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc
from meterstream.schemas.event import DEFAULT_TIME_WINDOW, TimeWindow
from meterstream.schemas.rated import is_rows, pack_rows, unpack

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "usage-events"
WINDOW = 35 * 86_400_000
DAY = 86_400_000
OCT_20 = 1_792_454_400_000  # 2026-10-20T00:00:00Z
NOV_02 = 1_793_577_600_000  # 2026-11-02T00:00:00Z: the batch clock starts here
# Kafka timestamps the event time is judged against: none (the batch clock), received days or minutes
# after the event, before it, or long after (too old for the window)
TIMESTAMPS = [None] * 4 + [-1, NOV_02, NOV_02, NOV_02, OCT_20, 1_791_195_300_000, 1_791_196_000_000, 1_800_000_000_000]
# at the default window's edges, to the millisecond: 60 minutes before 2026-10-05T17:59:30.500Z (and 1 ms
# more), 92 days after 2026-09-30T22:00:00.000Z (and 1 ms more)
TIMESTAMPS += [1_791_219_570_500, 1_791_219_570_499, 1_798_754_400_000, 1_798_754_400_001]

CATALOG = parse_catalog(
    {
        "version": 1,
        "plans": [
            {
                "id": "cloud",
                "currency": "USD",
                "meters": {
                    "unit_conv": {  # conversion (half_up to 2 decimals), free units, minimum, maximum
                        "model": "unit",
                        "unit_amount": "0.0375",
                        "multiply_by": "3",
                        "divide_by": "7",
                        "conversion_rounding": "half_up",
                        "conversion_precision": 2,
                        "free_units": "5",
                        "minimum": "1.25",
                        "maximum": "40",
                    },
                    "graduated": {
                        "model": "graduated",
                        "tiers": [
                            {"up_to": "10", "block_size": "5", "block_amount": "1.5", "flat_amount": "2"},
                            {"up_to": "100", "unit_amount": "0.5"},
                            {"up_to": None, "unit_amount": "0.125", "flat_amount": "3"},
                        ],
                    },
                    "volume": {
                        "model": "volume",
                        "minimum": "7",
                        "tiers": [
                            {"up_to": "50", "unit_amount": "0.2", "flat_amount": "1"},
                            {"up_to": None, "unit_amount": "0.15", "flat_amount": "1"},
                        ],
                    },
                    "package": {"model": "package", "package_size": "10", "package_amount": "15", "rounding": "down"},
                    "package_up": {
                        "model": "package",
                        "package_size": "2.5",
                        "package_amount": "0.99",
                        "divide_by": "1000",
                        "conversion_rounding": "up",
                    },
                    "seat": {"model": "flat", "amount": "30", "billing": "in_arrears"},
                    "setup": {"model": "flat", "amount": "100", "cadence": "one_time", "installments": 3},
                    "fee": {
                        "model": "percentage",
                        "rate": "2.9",
                        "fixed_amount": "0.30",
                        "min_amount": "0.50",
                        "max_amount": "25",
                    },
                },
            },
            {
                "id": "yen",
                "currency": "JPY",
                "meters": {"unit_conv": {"model": "unit", "unit_amount": "3", "free_units": "2.5"}},
            },
            {"id": "telecom", "currency": "EUR", "telecom": {"file": "../rating/telecom/examples/telecom_plan.yaml"}},
        ],
        "assignments": [
            {"tenant": "cloud", "customer": "*", "plan": "cloud"},
            {"tenant": "cloud", "customer": "jp", "plan": "yen"},
            {"tenant": "telco", "customer": "*", "plan": "telecom"},
        ],
    },
    base_dir=ROOT / "deploy",
)

CLOUD_METERS = ["unit_conv", "graduated", "volume", "package", "package_up", "seat", "setup", "fee", "unpriced"]
TELECOM_METERS = ["voice_seconds", "sms", "data_bytes", "unpriced"]
DESTINATIONS = ["4915112345", "49301234", "498001234", "499001234", "33123456", "1212555", "8612345", "49", ""]
TIMES = [  # across bands (Berlin): weekday peak/off-peak, weekend, holiday, midnight, month ends, DST
    "2026-10-05T06:59:59.000Z",
    "2026-10-05T17:59:30.500Z",
    "2026-10-03T10:00:00.000Z",
    "2026-10-24T21:59:00.000Z",
    "2026-10-25T00:30:00.000Z",
    "2026-10-31T23:59:59.999Z",
    "2026-11-01T00:00:00.000Z",
    "2026-09-30T22:00:00.000Z",
    "2026-10-05T08:00:00+02:00",
    "2026-10-05T10:00:00Z",
    "2026-10-05t10:00:00.123456789z",
    "2026-10-05 23:59:00.5-01:00",
]
QUANTITIES = st.one_of(
    st.sampled_from(["0", "1", "5", "7", "10", "0.5", "12.25", "60", "61", "3599", "100000", "0.000000000001"]),
    st.integers(min_value=0, max_value=10**6),
    st.decimals(min_value=0, max_value=10**5, places=3, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["007", "1.000000000000", "18000", 4000, 2.5, 1e3, 2**53 - 1, 2**53, "9" * 26, "9" * 27]),
)
MALFORMED = st.sampled_from(
    [
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"id": "x", "tenant": "cloud", "customer": "a", "meter": "fee", "time": "2026-10-05T10:00:00Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"-1","time":"2026-10-05T10:00:00Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":-1,"time":"2026-10-05T10:00:00Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1e5","time":"2026-10-05T10:00:00Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":true,"time":"2026-10-05T10:00:00Z"}',
        b'{"id":"x","tenant":"cl/oud","customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T10:00:00Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"Fee","quantity":"1","time":"2026-10-05T10:00:00Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2026-13-05T10:00:00.000Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T24:00:00.000Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T10:00:00"}',
        b'{"id":"","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T10:00:00.000Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T10:00:00.000Z",'
        b'"extra":1}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T10:00:00.000Z",'
        b'"dimensions":{"a":1}}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T10:00:00.000Z",'
        b'"dimensions":null}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1.0000000000001",'
        b'"time":"2026-10-05T10:00:00.000Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"' + b"9" * 40 + b'",'
        b'"time":"2026-10-05T10:00:00.000Z"}',
        b"\xff\xfe",
        b'{"id":"x","tenant":["cloud"],"customer":"a","meter":"fee","quantity":"1","time":"2026-10-05T10:00:00.000Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":{"m":1},"quantity":"1","time":"2026-10-05T10:00:00.000Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":[1],"time":"2026-10-05T10:00:00.000Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"1899-12-31T23:59:59.999Z"}',
        b'{"id":"x","tenant":"cloud","customer":"a","meter":"fee","quantity":"1","time":"2300-01-01T00:00:00.000Z"}',
    ]
)


@st.composite
def event(draw: st.DrawFn) -> bytes:
    tenant = draw(st.sampled_from(["cloud", "cloud", "telco", "telco", "nobody"]))
    customer = draw(st.sampled_from(["a", "b", "jp", "cust-\u00e9"]))
    meter = draw(st.sampled_from(TELECOM_METERS if tenant == "telco" else CLOUD_METERS))
    doc: dict = {
        "id": draw(st.sampled_from([f"e{i}" for i in range(40)])),  # a small pool: duplicates
        "tenant": tenant,
        "customer": customer,
        "meter": meter,
        "quantity": draw(QUANTITIES),
        "time": draw(st.sampled_from(TIMES)),
    }
    if tenant == "telco" and draw(st.booleans()):
        doc["dimensions"] = {"destination": draw(st.sampled_from(DESTINATIONS))}
    elif draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(["region", "k" * 40, "k" * 129, "", "a\tb", "r\u00e9gion"]))
        doc["dimensions"] = {key: draw(st.sampled_from(["eu", "us", "x" * 70, "\u00e9" * 300, "\u00e9" * 600]))}
    if draw(st.integers(0, 3)) == 0:
        doc["subject"] = draw(st.sampled_from(["s1", "", "y" * 100]))
    if draw(st.integers(0, 3)) == 0:
        doc["source"] = draw(st.sampled_from(["gw1", "z" * 80]))
    if draw(st.integers(0, 2)) == 0:  # a derived event: its origin (a small pool of keys and kinds: conflicts)
        doc["origin"] = draw(st.one_of(
            st.fixed_dictionaries({"key": st.sampled_from(["o1", "o2", "o3", "o" * 70]),
                                   "kind": st.sampled_from(["A", "A", "B", "k" * 65])}),
            st.sampled_from([{"key": "o1"}, {"key": "", "kind": "A"}, {"key": "o1", "kind": "A", "x": 1},
                             {"key": 1, "kind": "A"}, None, "o1"]),
        ))  # fmt: skip
    return orjson.dumps(doc)


MESSAGE = st.one_of(event(), event(), event(), event(), MALFORMED)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[list[Message]], list[int], TimeWindow | None]:
    values = draw(st.lists(MESSAGE, min_size=1, max_size=120))
    values += draw(st.lists(st.sampled_from(values), max_size=20))  # exact re-sends, later
    partitions = draw(st.integers(1, 3))
    next_offset = dict.fromkeys(range(partitions), 0)
    msgs = []
    for value in values:
        p = draw(st.integers(0, partitions - 1))
        key = draw(st.sampled_from([b"k", None]))
        msgs.append(Message(p, next_offset[p], key, value, draw(st.sampled_from(TIMESTAMPS))))
        next_offset[p] += draw(st.sampled_from([1, 1, 1, 3]))  # gaps: compacted or transactional offsets
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(msgs) - 1)), max_size=6)))
    batches = [msgs[a:b] for a, b in zip([0, *cuts], [*cuts, len(msgs)], strict=True) if msgs[a:b]]
    # the clock of each batch: mostly the same day, sometimes past the dedup window (ids forgotten)
    clocks, now = [], NOV_02
    for _ in batches:
        now += draw(st.sampled_from([0, 1, 1000, DAY, WINDOW, WINDOW + 1]))
        clocks.append(now)
    return batches, clocks, draw(st.sampled_from([DEFAULT_TIME_WINDOW] * 3 + [TimeWindow.of(30, 1), None]))


def run_legacy(base: Path, batches: list[list[Message]], clocks: list[int], window: TimeWindow | None, catalog=None):
    """The per-message native loop: step.process per message against the batch buffer."""
    stores: dict[int, PartitionStore] = {}
    latest: dict[int, BatchState] = {}
    rated: list[tuple[int, bytes]] = []
    dead: list[tuple[int, dict]] = []
    in_flight: list[tuple[dict[int, BatchState], dict[int, int], dict[int, Counter]]] = []
    for msgs, now in zip(batches, clocks, strict=True):
        states: dict[int, BatchState] = {}
        last: dict[int, int] = {}
        kinds: dict[int, Counter] = {}
        for m in msgs:
            if m.partition not in stores:
                stores[m.partition] = PartitionStore(base / f"p{m.partition}")
            if m.partition not in states:
                states[m.partition] = latest[m.partition] = BatchState(stores[m.partition], latest.get(m.partition))
                kinds[m.partition] = Counter()
            pos = Position(TOPIC, m.partition, m.offset, m.key, m.timestamp_ms)
            out = process(catalog or CATALOG, states[m.partition], m.value, pos, now, WINDOW, time_window=window)
            if out.rated is not None:
                rated.append((m.partition, orjson.dumps(out.rated)))
            elif out.dead_letter is not None:
                dead.append((m.partition, out.dead_letter))
            kinds[m.partition][out.kind.value] += 1
            last[m.partition] = m.offset
        outcomes = {p: Counter({k.value: n for k in Kind if (n := c[k.value])}) for p, c in kinds.items()}
        in_flight.append((states, last, outcomes))  # as the runner counts them: in Kind order
        _commit_all_but_newest(in_flight)
    _commit_all_but_newest(in_flight, keep=0)
    return rated, dead, _dump(stores)


def run_columnar(base: Path, batches: list[list[Message]], clocks: list[int], window: TimeWindow | None, catalog=None):
    step = ColumnarStep(catalog or CATALOG, TOPIC, WINDOW, window)
    # a partition's messages go through in chunks (columnar.CHUNK, 512): small chunks here, 1 to 7 messages (from
    # the case's size), so that running totals, bundles, duplicates and replays cross chunk boundaries
    step.chunk = 1 + sum(map(len, batches)) % 7
    stores: dict[int, PartitionStore] = {}
    latest: dict[int, BatchState] = {}
    rated: list[tuple[int, bytes]] = []
    dead: list[tuple[int, dict]] = []
    in_flight: list = []
    for msgs, now in zip(batches, clocks, strict=True):
        states: dict[int, BatchState] = {}
        for m in msgs:
            if m.partition not in stores:
                stores[m.partition] = PartitionStore(base / f"p{m.partition}")
            if m.partition not in states:
                states[m.partition] = latest[m.partition] = BatchState(stores[m.partition], latest.get(m.partition))
        out = step.run(states, msgs, now)
        for p, rows in out.rated.items():
            rated.extend((p, orjson.dumps(record)) for record in _sent(rows))
        dead.extend((p, letter) for p, _key, letter in out.dead_letters)
        in_flight.append((states, out.last, out.outcomes))
        _commit_all_but_newest(in_flight)
    _commit_all_but_newest(in_flight, keep=0)
    return rated, dead, _dump(stores)


def _sent(rows: list[tuple]) -> list[dict]:
    """The records as the sink receives them: JSON rows messages of at most 4 KB, decoded."""
    values = pack_rows(rows, max_bytes=4096)
    assert all(is_rows(v) for v in values), "the columnar path's records must travel as JSON rows"
    return [record for value in values for record in unpack(value)]


def _commit_all_but_newest(in_flight: list, keep: int = 1) -> None:
    while len(in_flight) > keep:
        states, last, kinds = in_flight.pop(0)
        for p, offset in last.items():
            states[p].commit(offset + 1, kinds[p])


def _dump(stores: dict[int, PartitionStore]) -> dict[int, dict[bytes, bytes]]:
    dumped = {p: dict(store.db.items()) for p, store in stores.items()}
    for store in stores.values():
        store.close()
    return dumped


def _outcome(runner, *args):
    try:
        return runner(*args)
    except Exception as exc:  # compared by type and message
        return exc


def _by_partition(items: list[tuple[int, object]]) -> dict[int, list[object]]:
    out: dict[int, list[object]] = {}
    for p, item in items:
        out.setdefault(p, []).append(item)
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def test_columnar_equals_per_message_specification(case: tuple) -> None:
    assert_same_outcome(*case)


def assert_same_outcome(batches: list, clocks: list[int], window: object) -> None:
    """Both paths over the same batches: the same records and dead letters per partition, in Kafka order, and the
    same RocksDB contents (or the same exception)."""
    with tempfile.TemporaryDirectory() as tmp:
        legacy = _outcome(run_legacy, Path(tmp) / "legacy", batches, clocks, window)
        columnar = _outcome(run_columnar, Path(tmp) / "columnar", batches, clocks, window)
    if isinstance(legacy, Exception) or isinstance(columnar, Exception):
        # where the specification itself raises (e.g. a telecom cost beyond the default decimal context),
        # the batch path must raise the same, not make up an answer
        assert repr(columnar) == repr(legacy)
        return
    (l_rated, l_dead, l_state), (c_rated, c_dead, c_state) = legacy, columnar
    # Kafka order matters within a partition (outputs go to the input's partition number)
    assert _by_partition(c_rated) == _by_partition(l_rated)
    assert _by_partition(c_dead) == _by_partition(l_dead)
    assert c_state.keys() == l_state.keys()
    for p in l_state:
        assert c_state[p] == l_state[p], f"partition {p}: state differs"


def _live_view() -> CatalogView:
    """Live subscriptions over the file catalog: cloud/a changes plan version at 2026-10-15 (tiers, then unit
    prices, mid-period: the running total crosses the change), cloud/b's subscription starts 2026-10-20 (before
    it the file catalog's plan rates it), telco has none (the file catalog as before)."""
    usage_v1 = {m: {"model": "graduated", "tiers": [{"up_to": "10", "unit_amount": "0.5"},
                                                    {"up_to": None, "unit_amount": "0.25", "flat_amount": "1"}]}
                for m in ("graduated", "volume", "fee", "seat")}  # fmt: skip
    usage_v2 = {m: {"model": "unit", "unit_amount": "0.0375"} for m in ("graduated", "volume", "unit_conv")}
    table = EntityTable()
    for version, usage in ((1, usage_v1), (2, usage_v2)):
        table.apply(PlanVersionDoc(tenant="cloud", code="live", version=version, name="live", currency="USD",
                                   usage=usage))  # fmt: skip
    mid = datetime(2026, 10, 15, tzinfo=UTC)
    phases = [Phase(plan_code="live", plan_version=1, start=datetime(2026, 1, 1, tzinfo=UTC), end=mid),
              Phase(plan_code="live", plan_version=2, start=mid)]  # fmt: skip
    table.apply(SubscriptionDoc(tenant="cloud", external_id="sa", customer="a", version=1, phases=phases))
    late = [Phase(plan_code="live", plan_version=2, start=datetime(2026, 10, 20, tzinfo=UTC))]
    # cloud/b is billed in New York on the anniversary of its start (periods from the 19th, local, at 20:00
    # UTC in autumn): its running totals restart there, not at UTC month ends
    table.apply(CustomerDoc(tenant="cloud", external_id="b", name="b", version=1, timezone="America/New_York"))
    table.apply(SubscriptionDoc(tenant="cloud", external_id="sb", customer="b", version=1, phases=late,
                                billing_anchor="anniversary"))  # fmt: skip
    return CatalogView(table, CATALOG)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def test_columnar_equals_specification_with_live_subscriptions(case: tuple) -> None:
    """The same comparison when the plan depends on each event's time (issue #14's live catalog)."""
    batches, clocks, window = case
    with tempfile.TemporaryDirectory() as tmp:
        legacy = _outcome(run_legacy, Path(tmp) / "legacy", batches, clocks, window, _live_view())
        columnar = _outcome(run_columnar, Path(tmp) / "columnar", batches, clocks, window, _live_view())
    if isinstance(legacy, Exception) or isinstance(columnar, Exception):
        assert repr(columnar) == repr(legacy)
        return
    (l_rated, l_dead, l_state), (c_rated, c_dead, c_state) = legacy, columnar
    assert _by_partition(c_rated) == _by_partition(l_rated)
    assert _by_partition(c_dead) == _by_partition(l_dead)
    assert c_state == l_state


def test_live_plan_change_mid_period_prices_each_side_with_its_plan() -> None:
    """Hand-checked: cloud/a, 12 graduated units on 2026-10-05 under v1 (10 x 0.5 + 2 x 0.25 + flat 1 = 6.50),
    then 4 more on 2026-10-20 under v2 (unit 0.0375: total(16) - total(12) = 0.15), continuing the period's
    running total; the specification and the batch path agree."""
    msgs = [
        Message(
            0,
            0,
            None,
            b'{"id":"x1","tenant":"cloud","customer":"a","meter":"graduated","quantity":"12",'
            b'"time":"2026-10-05T10:00:00.000Z"}',
        ),
        Message(
            0,
            1,
            None,
            b'{"id":"x2","tenant":"cloud","customer":"a","meter":"graduated","quantity":"4",'
            b'"time":"2026-10-20T10:00:00.000Z"}',
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rated, dead, _ = run_columnar(Path(tmp) / "c", [msgs], [NOV_02], None, _live_view())
        spec, _, _ = run_legacy(Path(tmp) / "l", [msgs], [NOV_02], None, _live_view())
    records = [orjson.loads(r) for _, r in rated]
    assert [(r["plan"], r["amount"]) for r in records] == [("live@1", "6.50"), ("live@2", "0.1500")]
    assert rated == spec and dead == []


def test_live_subscription_totals_restart_at_its_own_period_in_its_time_zone() -> None:
    """Hand-checked: cloud/c is billed in New York, calendar months, graduated (first 10 units at 0.5, then
    0.25 plus a flat 1 when the tier is entered). 8 units at 2026-11-30T23:00Z and 8 at 2026-12-01T03:00Z
    are both in New York's November (18:00 and 22:00 local): the second crosses into tier 2,
    total(16) - total(8) = (10 x 0.5 + 6 x 0.25 + 1) - 8 x 0.5 = 7.50 - 4.00 = 3.50, period `2026-11`.
    8 units at 2026-12-01T06:00Z (01:00 local) start December: 8 x 0.5 = 4.00, period `2026-12`.
    (By UTC months the second would have started December at 4.00.) Both paths agree."""
    table = EntityTable()
    tiers = {"model": "graduated", "tiers": [{"up_to": "10", "unit_amount": "0.5"},
                                             {"up_to": None, "unit_amount": "0.25", "flat_amount": "1"}]}  # fmt: skip
    table.apply(PlanVersionDoc(tenant="cloud", code="ny", version=1, name="ny", currency="USD",
                               usage={"graduated": tiers}))  # fmt: skip
    table.apply(CustomerDoc(tenant="cloud", external_id="c", name="c", version=1, timezone="America/New_York"))
    start = [Phase(plan_code="ny", plan_version=1, start=datetime(2026, 1, 1, 5, tzinfo=UTC))]
    table.apply(SubscriptionDoc(tenant="cloud", external_id="sc", customer="c", version=1, phases=start))
    times = ("2026-11-30T23:00:00.000Z", "2026-12-01T03:00:00.000Z", "2026-12-01T06:00:00.000Z")
    msgs = [
        Message(
            0,
            i,
            None,
            b'{"id":"n%d","tenant":"cloud","customer":"c","meter":"graduated","quantity":"8",'
            b'"time":"%s"}' % (i, t.encode()),
        )
        for i, t in enumerate(times)
    ]
    dec_03 = 1_796_256_000_000  # the batch clock: 2026-12-03T00:00:00Z
    with tempfile.TemporaryDirectory() as tmp:
        rated, dead, _ = run_columnar(Path(tmp) / "c", [msgs], [dec_03], None, CatalogView(table, CATALOG))
        spec, _, _ = run_legacy(Path(tmp) / "l", [msgs], [dec_03], None, CatalogView(table, CATALOG))
    records = [orjson.loads(r) for _, r in rated]
    assert [(r["period"], r["amount"], r["cumulative"]) for r in records] == [
        ("2026-11", "4.0", "8"),
        ("2026-11", "3.50", "16"),
        ("2026-12", "4.0", "8"),
    ]
    assert rated == spec and dead == []


def test_scenario_covers_the_outcomes() -> None:
    """A fixed batch through the columnar path gives every outcome, with hand-checked amounts."""
    msgs = [
        Message(
            0,
            0,
            None,
            b'{"id":"a","tenant":"cloud","customer":"a","meter":"graduated","quantity":"12",'
            b'"time":"2026-10-05T10:00:00.000Z"}',
        ),
        Message(
            0,
            1,
            None,
            b'{"id":"a","tenant":"cloud","customer":"a","meter":"graduated","quantity":"12",'
            b'"time":"2026-10-05T10:00:00.000Z"}',
        ),
        Message(
            0,
            2,
            None,
            b'{"id":"b","tenant":"cloud","customer":"a","meter":"graduated","quantity":"90",'
            b'"time":"2026-10-05T10:00:00.000Z"}',
        ),
        Message(
            0,
            3,
            None,
            b'{"id":"c","tenant":"nobody","customer":"a","meter":"graduated","quantity":"1",'
            b'"time":"2026-10-05T10:00:00.000Z"}',
        ),
        Message(0, 4, None, b"not json"),
        Message(
            0,
            5,
            None,
            b'{"id":"d","tenant":"cloud","customer":"a","meter":"fee","quantity":"100",'
            b'"time":"2026-10-05T10:00:00.000Z"}',
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore(Path(tmp) / "p0")
        out = ColumnarStep(CATALOG, TOPIC, WINDOW).run({0: BatchState(store)}, msgs, NOV_02)
        store.close()
    amounts = [record["amount"] for record in _sent(out.rated[0])]
    # graduated: 12 units -> 2 blocks of 5 at 1.5 + flat 2 = 5, plus 2 x 0.5 = 6; then 90 more (102):
    # 88 x 0.5 = 44 for tier 2 (to 100), 2 x 0.125 + flat 3 = 3.25 -> 47.25; fee: 100 x 2.9% + 0.30 = 3.20
    assert [float(a) for a in amounts] == [6.0, 47.25, 3.2]
    assert out.outcomes[0] == Counter({Kind.RATED.value: 3, Kind.DUPLICATE.value: 1, Kind.DEAD_LETTER.value: 2})
    assert [(d[2]["stage"], d[2]["field"]) for d in out.dead_letters] == [("rate", "customer"), ("parse", "$")]


def test_a_client_event_sent_again_as_another_kind_is_a_duplicate() -> None:
    """Origins (processor/dedup.py): o1 as kind A feeds two meters (two usage events, both rated), then o1 as kind
    B (another usage id) is a duplicate; o2 as B is new. The same through the specification, and the entries the
    two paths leave are the same, key by key. A day past the window, o1 as B is new again."""

    def msg(offset: int, id_: str, meter: str, key: str, kind: str) -> Message:
        doc = {"id": id_, "tenant": "cloud", "customer": "a", "meter": meter, "quantity": "1",
               "time": "2026-10-05T10:00:00.000Z", "origin": {"key": key, "kind": kind}}  # fmt: skip
        return Message(0, offset, None, orjson.dumps(doc))

    first = [msg(0, "x1", "graduated", "o1", "A"), msg(1, "x2", "fee", "o1", "A"), msg(2, "x3", "graduated", "o1", "B"),
             msg(3, "x4", "graduated", "o2", "B")]  # fmt: skip
    later = [msg(4, "x5", "graduated", "o1", "B")]
    for runner in (run_columnar, run_legacy):
        with tempfile.TemporaryDirectory() as tmp:
            sent, dead, dump = runner(Path(tmp), [first, later], [NOV_02, NOV_02 + WINDOW + DAY], DEFAULT_TIME_WINDOW)
        assert [orjson.loads(r)["id"] for _, r in sent] == ["x1", "x2", "x4", "x5"], runner.__name__
        assert dead == [], runner.__name__
        entries = [orjson.loads(v) for k, v in dump[0].items() if k.startswith(b"d|cloud\x1e")]
        assert sorted((e["k"], e["o"]) for e in entries) == [("B", 3), ("B", 4)], runner.__name__  # o1 rewritten
    assert_same_outcome([first, later], [NOV_02, NOV_02 + WINDOW + DAY], DEFAULT_TIME_WINDOW)
