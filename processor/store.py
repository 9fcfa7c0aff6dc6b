"""Processor state on local RocksDB, one store per input partition, written once per batch.

A batch's state writes, its outcome counters and the input offset they reach are one atomic
WriteBatch, so after a crash the store is exactly as it was after some whole batch, and processing
resumes right after that batch with exact counters.

Values are JSON (orjson), except dedup entries `{"p", "o", "t"}`, the one value written per event:
those are 21 bytes of binary (`encode_entry`: a tag byte 0x01, partition, offset, first-seen ms, big
endian) instead of ~36 of JSON. A JSON value never starts with 0x01, so `decode_value` reads both, and
stores written by earlier versions (JSON entries) keep working. In a batch's buffer (`BatchState.pending`) the
batch path holds its dedup entries packed already (bytes, `pack_tagged_entry`: no dict per event, nothing to encode
at the commit); `BatchState.get` gives them back as the dict.

Dedup entries are bounded: each commit adds one index entry per day its entries were first seen,
`t|<day>|*<next offset>` holding their keys (a JSON list), and `purge_before(day)` walks that index from
its start, deleting what fell out of the window, so a purge touches only expired ids. Earlier versions
wrote one index key per entry, `t|<day>|<key>` with an empty value; the purge reads those too.

Finished telecom sessions (processor/sessions.py: `s|...` keys whose value is `[{"closed": ...}, offset]`)
expire with the same window: the commit that writes a closed session adds `u|<day>|<session key>`, the day
of the batch's clock (its dedup entries' first-seen ms), holding the offset of that write; the purge of that
day deletes the session if it still holds that write (a session written again since, by a late record, has a
newer offset and a newer index entry, and is kept), with changelog tombstones for it and its index entry.
Until then a repeated or covered record of the session is still told apart from a new session.

The store is a cache of the partition's changelog (processor/changelog.py): `prepare` turns a batch's
writes (every key, whatever its name) into the store's operations and the changelog records of the same
change, `apply` writes the operations with the changelog offset they reach (`\x00changelog`, local only),
`plan_purge` gives the purge's deletes and the tombstones of the index entries it drops, and `restore`
applies changelog records read back (a packed index record holds its commit's dedup entries of that day).

A batch reads its running totals, bundle use and sessions again and again: the store keeps the values its
commits wrote for keys other than dedup entries (`recent`, the bytes RocksDB holds, at most RECENT_MAX keys),
so such a read is a dict lookup, not a RocksDB get (~3 µs of CPU each on bench/processor_step.py's columnar
path, the memtable pushed out of the CPU's caches by the batch's work); a purge, a restore and a wipe empty
it. Write the store only through these methods.

A write whose value is None (a key other than a dedup entry) deletes the key: a RocksDB delete and a changelog
tombstone. The store keeps an in-memory index of the held telecom sessions' keys (`h|held|<session key>`,
processor/sessions.py), `held`: the committed values, read by a prefix scan when the store is opened, after a
restore and emptied by a wipe, and kept by every commit; the processor's tick finds the sessions to release there
without reading a whole-partition value.
"""

from __future__ import annotations

import struct
import time
from collections import Counter, deque
from collections.abc import Iterator, MutableMapping
from itertools import islice, starmap
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch

from meterstream.processor.dedup import DEDUP_PREFIX

_MISSING = object()
_OFFSET_KEY = b"\x00offset"
COMMIT_END = _OFFSET_KEY  # the last changelog record of every commit (and purge)
_CHANGELOG_KEY = b"\x00changelog"  # local only: the changelog offset this store reached
_COUNTS_KEY = b"\x00counts"
_INDEX = b"t|"
_SESSION_INDEX = b"u|"  # `u|<day>|<session key>`: a finished session, stamped that day
_SESSION_PREFIX = "s|"  # processor/sessions.py SESSION_PREFIX (not imported: the store stays free of rating)
_HELD_PREFIX = b"h|held|"  # processor/sessions.py HELD_PREFIX: one key per held session, indexed in memory (`held`)
_BATCH_INDEX = b"*"  # after `t|<day>|`: a commit's index entry (a dedup key starts with "d|")
DAY_MS = 86_400_000
_ENTRY = struct.Struct(">BIQQ")  # tag, partition, offset, first seen (epoch ms)
_ENTRY_TAG = 1
_ENTRY_SIZE = _ENTRY.size
_pack_entry = _ENTRY.pack
_unpack_entry = _ENTRY.unpack
_dumps, _loads = orjson.dumps, orjson.loads
# the most bytes of dedup entries in one packed changelog record: a day's entries of a batch beyond it go in more
# records (`t|<day>|*<offset>.<i>`), each well under Kafka's 1 MB message limit (librdkafka's message.max.bytes,
# the broker's max.message.bytes): 5,000 ids of 200 characters in one partition made one 1.2 MB record, which
# the producer refused (MSG_SIZE_TOO_LARGE) and the processor stopped on it
CHANGELOG_RECORD_MAX = 512 * 1024
# the most keys `PartitionStore.recent` holds (~150-300 bytes each) before the least recently written half goes
RECENT_MAX = 32_768


ENTRY_TAG = _ENTRY_TAG
# (ENTRY_TAG, partition, offset, first-seen ms) -> the dedup entry {"p", "o", "t"} as stored (`encode_entry`'s binary
# form), in one C call: the batch path (processor/columnar.py) puts these bytes in its buffer, `prepare` writes them
# as they are, and `BatchState.get` reads them back as the dict
pack_tagged_entry = _pack_entry


def encode_entry(value: dict[str, Any]) -> bytes:
    """A dedup entry as stored: binary when it is exactly {"p", "o", "t"} with integers that fit, else JSON."""
    if len(value) == 3:
        try:
            return _pack_entry(_ENTRY_TAG, value["p"], value["o"], value["t"])
        except (KeyError, struct.error):
            pass
    return _dumps(value)


_LEN = struct.Struct(">HH")  # a packed entry's key and value lengths


def pack_entries(pairs: list[tuple[str, bytes]]) -> bytes:
    """Dedup entries (key, encoded value) as one changelog value: per entry two big-endian u16 lengths,
    the key's UTF-8, the value."""
    return b"".join(_entry_parts(pairs))


def _entry_parts(pairs: list[tuple[str, bytes]]) -> list[bytes]:
    """`pack_entries`' parts: header, key, value for each entry."""
    parts: list[bytes] = []
    for key, raw in pairs:
        kb = key.encode()
        parts += (_LEN.pack(len(kb), len(raw)), kb, raw)
    return parts


def unpack_entries_raw(data: bytes) -> list[tuple[bytes, bytes]]:
    """`pack_entries`' pairs, keys as UTF-8 bytes."""
    out: list[tuple[bytes, bytes]] = []
    add, i, size, unpack, end = out.append, 0, _LEN.size, _LEN.unpack_from, len(data)
    while i < end:
        klen, vlen = unpack(data, i)
        i += size
        j = i + klen
        add((data[i:j], data[j : j + vlen]))
        i = j + vlen
    return out


def unpack_entries(data: bytes) -> list[tuple[str, bytes]]:
    """`pack_entries`' pairs as they were given."""
    return [(k.decode(), v) for k, v in unpack_entries_raw(data)]


class Prepared(NamedTuple):
    """A commit (or purge) before it is applied: the store's operations (None: delete), the changelog
    records of the same change, the counters after it (None: unchanged) and, for a purge, how many ids
    it forgets."""

    ops: list[tuple[bytes, bytes | None]]
    records: list[tuple[bytes, bytes | None]]
    counts: Counter[str] | None
    forgotten: int = 0


def decode_value(raw: bytes) -> Any:
    """A stored value: a binary dedup entry as the dict {"p", "o", "t"}, anything else from JSON."""
    if raw[0] == _ENTRY_TAG and len(raw) == _ENTRY_SIZE:
        _, p, o, t = _unpack_entry(raw)
        return {"p": p, "o": o, "t": t}
    return _loads(raw)


def _options() -> Options:
    """Most lookups are misses (every new event id is looked up once): bloom filters on the table files
    and in the memtable answer a miss without searching (here 1.8 -> 0.4 µs in the memtable). The memtable's
    filter takes 2% of the 64 MB write buffer (1.3 MB, ~13 bits per entry when the buffer is full): at 10%
    (6.7 MB) every write touched a filter larger than the CPU's caches, and a batch's commit plus its
    multi-get cost ~0.1 µs per event more, with no fewer lookups answered."""
    options = Options(raw_mode=True)
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    options.set_memtable_prefix_bloom_ratio(0.02)
    options.set_memtable_whole_key_filtering(True)
    return options


def _chunks(parts: list[bytes], names: list[str]) -> Iterator[tuple[bytes, list[str]]]:
    """A day's packed entries (three parts per entry, one name each) as records of at most CHANGELOG_RECORD_MAX
    bytes (one entry alone is never split), in order; one record when they fit, as almost always."""
    whole = b"".join(parts)
    if len(whole) <= CHANGELOG_RECORD_MAX:
        yield whole, names
        return
    start = size = 0
    for i in range(0, len(parts), 3):
        entry = len(parts[i]) + len(parts[i + 1]) + len(parts[i + 2])
        if size + entry > CHANGELOG_RECORD_MAX and i > start:
            yield b"".join(parts[start:i]), names[start // 3 : i // 3]
            start, size = i, 0
        size += entry
    yield b"".join(parts[start:]), names[start // 3 :]


def _write_batch(ops: list[tuple[bytes, bytes | None]]) -> WriteBatch:
    """Operations (None: delete) as one WriteBatch: the puts before the trailing deletes (a commit's order:
    `prepare` puts its deletes last) without a Python loop, the deletes one at a time."""
    k = len(ops)
    while k and ops[k - 1][1] is None:
        k -= 1
    batch = WriteBatch(raw_mode=True)
    try:
        deque(starmap(batch.put, ops if k == len(ops) else ops[:k]), 0)
    except ValueError:  # a delete among the puts (rocksdict refuses None): all one at a time
        batch, k = WriteBatch(raw_mode=True), 0
    put, delete = batch.put, batch.delete
    for key, value in ops[k:]:
        if value is None:
            delete(key)
        else:
            put(key, value)
    return batch


class PartitionStore:
    """The durable state of one input partition."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options=_options())
        # the values of the keys other than dedup entries (running totals, bundle use, sessions...) as this
        # process's commits wrote them, so a batch reads a busy key without a RocksDB lookup (`BatchState.get`):
        # exactly the store's value, kept by `apply`, emptied when the store is written otherwise
        self.recent: dict[bytes, bytes] = {}
        raw = self.db.get(_COUNTS_KEY)
        self.counts: Counter[str] = Counter(orjson.loads(raw) if raw else {})
        # the held telecom sessions' keys (`h|held|...`, processor/sessions.py) -> their decoded values, as committed:
        # built by a prefix scan when opened (and after a restore or a wipe), then kept by `apply`
        self.held: dict[str, Any] = {}
        self.held_version = 0  # changes whenever `held` does (a reader may keep what it derived from it until then)
        self._load_held()

    def _load_held(self) -> None:
        """Build `held` from the store: a prefix scan of the `h|held|` keys."""
        held: dict[str, Any] = {}
        for key, raw in self.db.items(from_key=_HELD_PREFIX):
            if not key.startswith(_HELD_PREFIX):
                break
            held[key.decode()] = _loads(raw)
        self.held = held
        self.held_version += 1

    def get(self, key: str) -> Any:
        raw = self.db.get(key.encode())
        return None if raw is None else decode_value(raw)

    def get_many_raw(self, keys: list[bytes]) -> list[bytes | None]:
        """Stored values (encoded, `decode_value` reads them) of many keys in one multi-get, in order;
        None where absent."""
        return self.db.get(keys) if keys else []

    def next_offset(self) -> int | None:
        """The first input offset not yet reflected in this store (None: nothing processed yet)."""
        raw = self.db.get(_OFFSET_KEY)
        return None if raw is None else int(raw)

    def changelog_next(self) -> int | None:
        """The first changelog offset (processor/changelog.py) not yet reflected here (None: never set)."""
        raw = self.db.get(_CHANGELOG_KEY)
        return None if raw is None else int(raw)

    def prepare(self, writes: dict[str, Any], next_offset: int, outcomes: Counter[str]) -> Prepared:
        """A batch's writes as the store's operations and as changelog records, not yet applied.

        Every key of `writes` is written, whatever its name (dedup entries, running totals, bundle use,
        balances...); a key other than a dedup entry whose value is None is deleted (a tombstone in the
        changelog: processor/sessions.py's held-session and outbox keys). The changelog gets one record per
        non-dedup key (compaction keeps the newest) and one packed record per day index entry holding its
        dedup entries (`pack_entries`), so purging an index entry is one tombstone; the counters and the next
        offset come last.

        One pass per key (the hot path: one dedup entry per rated event): each key is encoded once, its
        entry packed inline, and its day's packed record built as it goes (the bytes `pack_entries` gives
        for the same pairs; tests/processor/test_store.py holds the plain version it must equal)."""
        ops: list[tuple[bytes, bytes | None]] = []
        records: list[tuple[bytes, bytes | None]] = []
        put, record, dumps, pack_entry, head = ops.append, records.append, _dumps, _pack_entry, _LEN.pack
        days: dict[int, tuple[list[bytes], list[str]]] = {}  # day -> (its packed record's parts, its keys)
        heads: dict[int, bytes] = {}  # a key length -> the header of a binary entry with that key length
        parts: list[bytes] = []
        names: list[str] = []
        closed: list[tuple[str, Any]] = []  # finished sessions: indexed below
        deletes: list[tuple[bytes, bytes | None]] = []  # after every put (`_write_batch` puts the rest at C speed)
        last_t = None
        last_tail = b""  # a packed entry's first-seen ms as bytes (never empty)
        for key, value in writes.items():
            kb = key.encode()
            if key.startswith(DEDUP_PREFIX):
                if value.__class__ is bytes:  # packed already (`pack_tagged_entry`: the batch path's entries)
                    raw = value
                    if raw[13:] != last_tail:  # its first-seen ms, read only when it differs from the one before
                        last_tail = raw[13:]
                        t = _unpack_entry(raw)[3]
                    else:
                        t = last_t
                else:
                    t, last_tail = value["t"], b""  # (last_tail stands for last_t)
                    try:  # encode_entry, inline
                        raw = pack_entry(_ENTRY_TAG, value["p"], value["o"], t) if len(value) == 3 else None
                    except (KeyError, struct.error):
                        raw = None
                if t != last_t:  # a batch's entries share one clock: one day lookup per batch
                    last_t = t
                    day = days.get(t // DAY_MS)
                    if day is None:
                        day = days[t // DAY_MS] = ([], [])
                    parts, names = day
                if raw is None:
                    raw = dumps(value)
                    parts.append(head(len(kb), len(raw)))
                else:
                    n = len(kb)
                    h = heads.get(n)
                    if h is None:
                        h = heads[n] = head(n, _ENTRY_SIZE)
                    parts.append(h)
                put((kb, raw))
                parts.append(kb)
                parts.append(raw)
                names.append(key)
            elif value is None:  # a delete, and its tombstone
                deletes.append((kb, None))
                record((kb, None))
            else:
                raw = dumps(value)
                put((kb, raw))
                record((kb, raw))
                if key.startswith(_SESSION_PREFIX) and _closed_session(value):
                    closed.append((key, value))
        if closed:
            day = (last_t if last_t is not None else int(time.time() * 1000)) // DAY_MS
            for key, value in closed:
                index = (b"%s%08d|%s" % (_SESSION_INDEX, day, key.encode()), dumps(value[-1]))
                put(index)
                record(index)
        indexed: list[tuple[bytes, bytes | None]] = []
        for day, (parts, names) in days.items():
            index_key = b"%s%08d|%s%020d" % (_INDEX, day, _BATCH_INDEX, next_offset)
            earlier = self.db.get(index_key)  # a commit to the same offset before (tools, tests): keep its keys
            if earlier is not None:
                known = set(names)
                old = [(k, v) for k in _loads(earlier) if k not in known and (v := self.db.get(k.encode())) is not None]
                parts = [*_entry_parts(old), *parts]
                names = [k for k, _ in old] + names
            day_records = []
            for i, (chunk, chunk_names) in enumerate(_chunks(parts, names)):
                key = index_key if i == 0 else b"%s.%d" % (index_key, i)  # still `t|<day>|*`: an index entry
                put((key, dumps(chunk_names)))
                day_records.append((key, chunk))
            indexed[:0] = day_records  # the last day first (as inserted at the front one by one before)
        records[:0] = indexed
        counts = self.counts + outcomes
        tail = [(_COUNTS_KEY, dumps(counts)), (_OFFSET_KEY, str(next_offset).encode())]
        ops.extend(tail)
        ops.extend(deletes)
        records.extend(tail)
        return Prepared(ops, records, counts)

    def apply(self, prepared: Prepared, changelog_next: int | None = None) -> None:
        """Write prepared operations atomically, with the changelog position they reach (when logged)."""
        batch = _write_batch(prepared.ops)
        if changelog_next is not None:
            batch.put(_CHANGELOG_KEY, str(changelog_next).encode())
        self.db.write(batch)
        recent = self.recent
        if prepared.counts is None:  # a purge: deletes
            recent.clear()
            return
        self.counts = prepared.counts
        if len(recent) > RECENT_MAX:  # the least recently written go, down to half
            for key in list(islice(recent, len(recent) - RECENT_MAX // 2)):
                del recent[key]
        # a commit's records put its other keys with their stored values (None: deleted); the index records (t|)
        # differ; the held sessions' keys are kept in `held` too
        held = self.held
        for key, value in prepared.records:
            if key.startswith(_INDEX):
                continue
            recent.pop(key, None)  # to the end: the dict's order is the order of the last writes
            if value is not None:
                recent[key] = value
                if key.startswith(_HELD_PREFIX):
                    held[key.decode()] = _loads(value)
                    self.held_version += 1
            elif key.startswith(_HELD_PREFIX):
                held.pop(key.decode(), None)
                self.held_version += 1

    def commit(self, writes: dict[str, Any], next_offset: int, outcomes: Counter[str]) -> None:
        """Apply a batch: state, dedup time index, outcome counters and next offset, atomically."""
        self.apply(self.prepare(writes, next_offset, outcomes))

    def plan_purge(self, day: int) -> Prepared:
        """The deletes that forget dedup entries first seen before `day` (days since the epoch), and the
        changelog tombstones of the index entries they leave (`len(prepared.forgotten)`: how many ids)."""
        end = b"%s%08d|" % (_INDEX, day)
        cutoff_ms = day * DAY_MS
        ops: list[tuple[bytes, bytes | None]] = []
        records: list[tuple[bytes, bytes | None]] = []
        deleted: set[bytes] = set()
        for key, value in self.db.items(from_key=_INDEX):
            if not key.startswith(_INDEX) or key >= end:
                break
            ops.append((key, None))
            rest = key[len(_INDEX) + 9 :]
            # this version's index entry lists a commit's keys; an earlier version's names one key
            if rest.startswith(_BATCH_INDEX):
                dkeys = [k.encode() for k in _loads(value)]
                records.append((key, None))
            else:
                dkeys = [rest]
            for dkey in dkeys:
                raw = self.db.get(dkey)
                if raw is not None and dkey not in deleted and decode_value(raw)["t"] < cutoff_ms:  # not re-seen
                    ops.append((dkey, None))
                    deleted.add(dkey)
        self._plan_session_purge(day, ops, records)
        if records and (offset := self.db.get(_OFFSET_KEY)) is not None:
            records.append((_OFFSET_KEY, offset))  # a changelog unit ends with the offset (changelog.py)
        return Prepared(ops, records, None, len(deleted))

    def _plan_session_purge(self, day: int, ops: list, records: list) -> None:
        """Add the deletes and tombstones of finished sessions indexed before `day` (and of their index)."""
        end = b"%s%08d|" % (_SESSION_INDEX, day)
        gone: set[bytes] = set()
        for key, written in self.db.items(from_key=_SESSION_INDEX):
            if not key.startswith(_SESSION_INDEX) or key >= end:
                break
            ops.append((key, None))
            records.append((key, None))
            skey = key[len(_SESSION_INDEX) + 9 :]
            raw = self.db.get(skey)
            if raw is None or skey in gone:
                continue
            value = _loads(raw)
            if _closed_session(value) and value[-1] == _loads(written):  # not written again since
                ops.append((skey, None))
                records.append((skey, None))
                gone.add(skey)

    def purge_before(self, day: int) -> int:
        """Forget dedup entries first seen before `day` (days since the epoch); returns how many."""
        plan = self.plan_purge(day)
        self.apply(plan)
        return plan.forgotten

    def restore(self, records: list[tuple[bytes, bytes | None]], changelog_next: int) -> int:
        """Apply changelog records (in log order) and the position they reach, atomically; returns how
        many state entries they wrote. The inverse of `prepare`/`plan_purge`: a packed index record puts
        its dedup entries and the index entry; its tombstone deletes the index entry and those of its
        entries not seen again since (the purge's rule); any other record puts or deletes its key."""
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        held = self.held
        deferred: list[tuple[bytes, bytes | None]] = []  # from the first tombstone of an index entry on
        n = 0
        for i, (key, value) in enumerate(records):
            if key.startswith(_INDEX) and key[len(_INDEX) + 9 : len(_INDEX) + 10] == _BATCH_INDEX:
                if value is None:  # needs the entries as they are by now: write the rest one record at a time
                    deferred = records[i:]
                    break
                pairs = unpack_entries_raw(value)
                for k, raw in pairs:
                    put(k, raw)
                put(key, _dumps([k.decode() for k, _ in pairs]))
                n += len(pairs)
            elif value is None:
                delete(key)
                if key.startswith(_HELD_PREFIX):
                    held.pop(key.decode(), None)
            else:
                put(key, value)
                if key.startswith(_HELD_PREFIX):
                    held[key.decode()] = _loads(value)
                n += 1
        for key, value in deferred:
            self.db.write(batch)
            batch = WriteBatch(raw_mode=True)
            if key.startswith(_INDEX) and key[len(_INDEX) + 9 : len(_INDEX) + 10] == _BATCH_INDEX and value is None:
                listed = self.db.get(key)
                day = int(key[len(_INDEX) : len(_INDEX) + 8])
                for k in _loads(listed) if listed else []:
                    raw = self.db.get(k.encode())
                    if raw is not None and decode_value(raw)["t"] // DAY_MS <= day:
                        batch.delete(k.encode())
                batch.delete(key)
            else:
                n += self._restore_one(batch, key, value)
                if key.startswith(_HELD_PREFIX):
                    if value is None:
                        held.pop(key.decode(), None)
                    else:
                        held[key.decode()] = _loads(value)
        batch.put(_CHANGELOG_KEY, str(changelog_next).encode())
        self.db.write(batch)
        self.recent.clear()
        self.held_version += 1
        raw = self.db.get(_COUNTS_KEY)
        self.counts = Counter(orjson.loads(raw) if raw else {})
        return n

    @staticmethod
    def _restore_one(batch: WriteBatch, key: bytes, value: bytes | None) -> int:
        if value is None:
            batch.delete(key)
            return 0
        if key.startswith(_INDEX) and key[len(_INDEX) + 9 : len(_INDEX) + 10] == _BATCH_INDEX:
            pairs = unpack_entries_raw(value)
            for k, raw in pairs:
                batch.put(k, raw)
            batch.put(key, _dumps([k.decode() for k, _ in pairs]))
            return len(pairs)
        batch.put(key, value)
        return 1

    def close(self) -> None:
        self.db.close()

    def wipe(self) -> None:
        """Delete every entry (a store that no longer matches its changelog is rebuilt from it)."""
        keys = list(self.db.keys())
        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(key)
        self.db.write(batch)
        self.recent.clear()
        self.held = {}
        self.held_version += 1
        self.counts = Counter()


def _closed_session(value: Any) -> bool:
    """A finished session's stored value `[{"closed": last sequence, ...}, offset]` (processor/sessions.py)."""
    return type(value) is list and len(value) == 2 and type(value[0]) is dict and "closed" in value[0]


class Uncommitted:
    """Several uncommitted batches' buffers seen as one `pending` (oldest first: a newer write wins), for a
    batch started while two before it are uncommitted; committed once its newest member is."""

    __slots__ = ("after", "members", "pending")

    def __init__(self, members: list[BatchState]) -> None:
        self.members = members
        self.after = None
        self.pending: dict[str, Any] = {}
        for member in members:
            self.pending.update(member.pending)

    @property
    def committed(self) -> bool:
        return self.members[-1].committed  # batches commit in order


class BatchState(MutableMapping[str, Any]):
    """A write buffer over a store: what `step.process` sees while a batch is being processed.

    `after` is the previous batches' buffer while they are still uncommitted (outputs or changelog records
    on their way to Kafka): their writes are seen as if committed. Batches commit in order and the
    processor starts a batch while at most two before it are uncommitted (processor/checkpoint.py): with
    one, `after` is its buffer; with two, an `Uncommitted` view of both (their writes merged once, when
    this batch starts; they are final by then). Readers look at `after.pending`, then the store, one level
    whatever the depth. A committed buffer is not linked (its writes are in the store), and `commit` cuts
    this buffer's link so old buffers are freed.
    """

    def __init__(self, store: PartitionStore, after: BatchState | None = None) -> None:
        self.store = store
        self.pending: dict[str, Any] = {}
        self.committed = False
        link: BatchState | Uncommitted | None = None
        if after is not None and not after.committed:
            link = after
            before = after.after
            if before is not None and not before.committed:  # two uncommitted batches before this one
                earlier = before.members if isinstance(before, Uncommitted) else [before]
                link = Uncommitted([b for b in earlier if not b.committed] + [after])
        self.after = link
        self._recent = store.recent.get
        self._db_get = store.db.get  # the hot path: one lookup in pending, else in the store's recent writes

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.pending.get(key, _MISSING)
        if value is not _MISSING:
            return value if value.__class__ is not bytes else decode_value(value)  # bytes: a packed dedup entry
        if self.after is not None:
            value = self.after.pending.get(key, _MISSING)
            if value is not _MISSING:
                return value if value.__class__ is not bytes else decode_value(value)
        kb = key.encode()
        raw = self._recent(kb)
        if raw is None:
            raw = self._db_get(kb)
        return default if raw is None else decode_value(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = value

    def prepare(self, next_offset: int, outcomes: Counter[str]) -> Prepared:
        """This buffer as the store's operations and changelog records (the previous batch's must be
        committed already)."""
        return self.store.prepare(self.pending, next_offset, outcomes)

    def commit(
        self,
        next_offset: int,
        outcomes: Counter[str],
        prepared: Prepared | None = None,
        changelog_next: int | None = None,
    ) -> None:
        """Write this buffer to the store (the previous batch's must be committed already); `prepared`
        (from `prepare`) when its changelog records were produced, with the changelog position reached."""
        self.store.apply(prepared or self.store.prepare(self.pending, next_offset, outcomes), changelog_next)
        self.after = None
        self.committed = True

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("state entries are never deleted inside a batch")

    def __iter__(self) -> Iterator[str]:
        return iter(self.pending)

    def __len__(self) -> int:
        return len(self.pending)
