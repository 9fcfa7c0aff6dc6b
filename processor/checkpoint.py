"""What is in flight and the one commit order of the native processor.

A processed batch (`InFlight`) holds, per input partition, its state buffer (`store.BatchState`), the
last input offset it covers and its outcome counters, plus how many of its messages Kafka has yet to
acknowledge. `Checkpointer` owns the deque of such batches and commits them, oldest first, in this
order and nowhere else:

1. **produce** every output of the batch (rated records packed into few messages, dead letters), on the
   idempotent `acks=all` producer, each with a delivery callback counting down `outstanding`;
2. **flush**: wait until Kafka acknowledged all of them (the wait overlaps the next batches'
   processing: at most `keep` batches stay in flight); a failed delivery stops here, uncommitted;
3. **changelog** (when the processor keeps one, processor/changelog.py): the batch's state writes, counters
   and next input offset as changelog records (`BatchState.prepare`), produced and acknowledged like the
   outputs. They go only after the outputs are acknowledged, so a changelog never holds the state of a
   batch whose outputs could still be lost: an instance that restores it resumes after outputs Kafka has;
4. **state**: per partition, one atomic RocksDB WriteBatch with the same writes, the next input offset and
   the changelog offset reached (`BatchState.commit`);
5. **offsets**: the consumer group's offsets (asynchronous, informational: a restart resumes from the
   offset in the state, which the group offset only mirrors for lag probes);
6. metrics and status.

A crash before step 3 replays the batch with the state of the batch before it, so every output is
repeated byte for byte (and collapses in ClickHouse); a crash after step 3 resumes right after it (the
local store, behind its changelog, is brought up to it first). Modelled on quixstreams'
`Checkpoint.commit` (produce -> flush -> changelog -> state -> offsets), written once.

**Two round trips, overlapped.** Steps 2 and 3 are two acknowledgement round trips per batch. The
processor (`keep=2`) does not wait for them in turn: `commit_delivered` advances the oldest batch as far
as Kafka allows without blocking (outputs acknowledged -> its changelog records produced -> acknowledged
-> state) and returns while at most two batches are in flight, so batch N's changelog records travel
while N+2 is processed, next to N+1's outputs (N+2 reads N's and N+1's writes, `store.BatchState`).

**Why the changelog records are not produced with the outputs** (one round trip, each commit closed by
its end record `store.COMMIT_END`, a restore applying only commits whose end record is there), thought
through and rejected because a changelog could then hold the state of a batch whose outputs are lost:

- If the end record goes with the outputs, a process killed (SIGKILL, OOM, power) after producing loses
  whatever was still in librdkafka's queue, and which of a batch's messages had reached a broker by then
  is a matter of timing: the changelog partition's records and end record may be acknowledged (their own
  produce request, maybe another broker) while a rated-usage message of the same batch never left the
  process. The instance that restores the partition resumes after the batch: that output never comes.
  The idempotent producer does not prevent it: it orders and de-duplicates per partition, with no
  atomicity across partitions, and a delivery failure being fatal only stops the process, it does not take
  back the records already acknowledged. Only transactions (exactly-once, outputs and changelog records in
  one transaction, consumers reading committed) give that atomicity; not built (a transaction commit is a
  round trip of its own, and faust, which has it, calls its exactly-once mode experimental).
- If only the end record waits for the outputs' acknowledgements, the second round trip stays (for one
  record instead of all), and a commit whose end record never came (the writer killed in between) leaves
  its records in the log anyway. A restore must then skip them, but compaction may already have removed,
  for a key they rewrite, the record of the last complete commit (compaction keeps the newest record per
  key, complete or not): the restored state would lack that key's committed value (a running total, a
  balance) or take the unfinished one, whose outputs may be lost. Neither is allowed.

So the order stays produce -> acknowledged -> changelog -> acknowledged -> state, and the cost of the
second round trip is hidden by overlapping it with processing instead of removed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from meterstream.ingest.producer import produce_waiting
from meterstream.processor import metrics
from meterstream.processor.changelog import ChangelogWriter
from meterstream.processor.store import BatchState, Prepared

log = logging.getLogger("meterstream.processor")


class InFlight:
    """A processed batch: its buffers, positions and outcomes, and how many outputs Kafka has yet to ack.

    Outputs are few (rated records are packed), so one delivery callback per output costs little.
    """

    __slots__ = (
        "busy_s", "changelog_next", "errors", "last", "logged", "outcomes", "outstanding", "prepared", "size",
        "started", "states",
    )  # fmt: skip

    def __init__(self, started: float, size: int) -> None:
        self.started, self.size, self.busy_s = started, size, 0.0
        self.states: dict[int, BatchState] = {}
        self.last: dict[int, int] = {}  # per input partition, the last offset processed
        self.outcomes: dict[int, Counter[str]] = {}
        self.outstanding = 0
        self.errors: list[str] = []
        self.logged = False  # step 3 done: its changelog records produced
        self.prepared: dict[int, Prepared] = {}  # per input partition, the writes as logged
        self.changelog_next: dict[int, int] = {}  # per changelog partition, the offset after its last record

    def delivered(self, err: Any, msg: Any) -> None:
        self.outstanding -= 1
        if err is not None:
            self.errors.append(str(err))

    def logged_one(self, err: Any, msg: Any) -> None:
        """A changelog record's delivery: also the offset the partition's changelog reached."""
        self.outstanding -= 1
        if err is not None:
            self.errors.append(str(err))
            return
        p, following = msg.partition(), msg.offset() + 1
        if following > self.changelog_next.get(p, -1):
            self.changelog_next[p] = following


class Checkpointer:
    """Produces a batch's outputs and commits finished batches in order (see the module docstring)."""

    def __init__(
        self,
        producer: Any,
        consumer: Any,
        input_topic: str,
        on_committed: Callable[[InFlight], None] | None = None,
        changelog: ChangelogWriter | None = None,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.input_topic = input_topic
        self.on_committed = on_committed  # step 6: metrics and status, after the state is durable
        self.changelog = changelog  # step 3 (None: local state only)
        self.in_flight: deque[InFlight] = deque()
        self.group_offsets: dict[int, int] = {}  # per partition, the next offset step 4 last reported
        self.group_committed_at = 0.0

    GROUP_REFRESH_S = 5.0

    def refresh_group_offsets(self, now: float) -> None:
        """Repeat step 5 with the newest offsets every GROUP_REFRESH_S seconds.

        The consumer-group commit is asynchronous and its failure is not fatal (the input position that
        counts is the one in the state store), but tools read the group: the lag probes, `up`, the demo
        and the chaos run wait for it. A commit lost while the broker restarts, right after the last
        batch of a burst, would otherwise leave the group behind until the next event arrives."""
        if self.group_offsets and now - self.group_committed_at >= self.GROUP_REFRESH_S:
            self._commit_group(now)

    def _commit_group(self, now: float) -> None:
        offsets = [TopicPartition(self.input_topic, p, o) for p, o in self.group_offsets.items()]
        self.consumer.commit(offsets=offsets, asynchronous=True)
        self.group_committed_at = now

    def produce(self, topic: str, key: bytes | None, value: bytes, partition: int, batch: InFlight) -> None:
        """Step 1 for one output of `batch` (waits for room in the producer's queue)."""
        batch.outstanding += 1
        produce_waiting(self.producer, topic, value=value, key=key, partition=partition, on_delivery=batch.delivered)

    def add(self, batch: InFlight) -> None:
        """A batch whose outputs were all produced joins the queue, behind the ones before it."""
        self.in_flight.append(batch)

    def commit_delivered(self, keep: int) -> None:
        """Steps 2-6: commit, in order, the batches whose outputs Kafka acknowledged, waiting until at
        most `keep` remain in flight; the oldest batch goes as far as its acknowledgements allow either way
        (its changelog records produced as soon as its outputs are acknowledged). A failed delivery raises
        here, uncommitted: a restart replays from the last committed batch."""
        waited = time.monotonic()
        while self.in_flight:
            self.producer.poll(0 if len(self.in_flight) <= keep else 0.005)
            batch = self.in_flight[0]
            if batch.errors:
                raise KafkaException(f"outputs not delivered: {batch.errors[:1]}")  # state not committed
            if batch.outstanding:
                if len(self.in_flight) <= keep:
                    return
                if time.monotonic() - waited > 10:  # e.g. the broker is restarting: keep waiting
                    log.warning("waiting for Kafka to acknowledge a batch's outputs")
                    waited = time.monotonic()
                continue
            if self.changelog is not None and not batch.logged:
                self._log(batch)  # step 3: its acknowledgements are waited for like the outputs'
                continue
            self.in_flight.popleft()
            self._commit(batch)

    def drop(self) -> int:
        """Forget the batches in flight, uncommitted (their input replays from the committed state: the
        caller moves the consumer back); returns how many."""
        n = len(self.in_flight)
        self.in_flight.clear()
        return n

    def _log(self, batch: InFlight) -> None:
        assert self.changelog is not None
        batch.logged = True
        for p, offset in batch.last.items():
            prepared = batch.prepared[p] = batch.states[p].prepare(offset + 1, batch.outcomes[p])
            batch.outstanding += self.changelog.produce(p, prepared.records, batch.logged_one)

    def _commit(self, batch: InFlight) -> None:
        for p, offset in batch.last.items():  # step 4: state + counters + next offset, atomically
            batch.states[p].commit(offset + 1, batch.outcomes[p], batch.prepared.get(p), batch.changelog_next.get(p))
        for p, offset in batch.last.items():  # step 5: the group's offsets (for tools; see refresh)
            self.group_offsets[p] = offset + 1
        self._commit_group(time.monotonic())
        metrics.EVENTS_IN.inc(batch.size)
        metrics.STEP_SECONDS.observe(batch.busy_s / max(batch.size, 1))
        if self.on_committed is not None:
            self.on_committed(batch)


__all__ = ["Checkpointer", "InFlight"]
