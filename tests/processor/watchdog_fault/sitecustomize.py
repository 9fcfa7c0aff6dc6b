"""Test-only fault for tests/processor/test_watchdog.py, loaded by the child processes it starts (PYTHONPATH).

While the file named by METERSTREAM_TEST_DROP_ACKS exists, the processor's outputs are still produced but their
delivery reports are dropped, so the batch is never acknowledged and never committed: the processor is stuck
with work waiting while Kafka answers, as after the broker restart in issue #12. The first process that meets
the file claims it (renames it to `<file>.claimed-<pid>`) and stays faulty; a process started after it is not.
"""

import os

_MARKER = os.environ.get("METERSTREAM_TEST_DROP_ACKS")

if _MARKER:
    from meterstream.processor import checkpoint

    _produce = checkpoint.Checkpointer.produce
    _faulty = {"on": False}

    def _drop_delivery(err, msg):  # the report never reaches the batch: `outstanding` never goes down
        return None

    def produce(self, topic, key, value, partition, batch):
        if not _faulty["on"] and os.path.exists(_MARKER):
            try:
                os.rename(_MARKER, f"{_MARKER}.claimed-{os.getpid()}")
                _faulty["on"] = True
            except FileNotFoundError:
                pass
        if not _faulty["on"]:
            return _produce(self, topic, key, value, partition, batch)
        batch.outstanding += 1
        while True:
            try:
                self.producer.produce(topic, value, key, partition, on_delivery=_drop_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)

    checkpoint.Checkpointer.produce = produce
