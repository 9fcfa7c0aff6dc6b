"""An ordered map in forked worker processes: the close prices and issues invoices on another core while this
process numbers, stores and writes the ones before (issue #15's speed target).

`ordered_map(fn, items, workers)` yields `fn(item)` (bytes) for every item, in the order of `items`, like
`map`. With `workers` >= 1 the items are cut into chunks of `chunk`; worker `w` (a child forked from this
process, so it sees everything the caller built: plans, customers, issuing terms) computes chunks w, w +
workers, ... and writes each chunk's results to its pipe as one frame; this process reads the frames in chunk
order. A worker that is ahead blocks on its full pipe (backpressure), so memory stays bounded.

`fn` must be pure: it runs in a copy of this process (a child's changes are not seen here) and must not use
connections, threads or files of the parent (ClickHouse, the invoice store, the Kafka producer). An
exception raised by `fn` in a worker is raised here, when its chunk's turn comes (the exception itself when it
pickles, else a RuntimeError with its text). A worker that dies without answering raises RuntimeError.
Workers are forked only where that is safe: Linux, and no other Python thread running (`can_fork`); else the
map runs here, serially (same results).
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

import msgspec

CHUNK = 250  # items per frame
_HEAD = struct.Struct("<BQ")  # kind (0 results, 1 error), payload length
_RESULTS, _ERROR = 0, 1
_encode_frame = msgspec.msgpack.Encoder().encode
_decode_frame = msgspec.msgpack.Decoder(list[bytes]).decode


def can_fork() -> bool:
    """Forking copies only the calling thread: safe here on Linux when this process runs no other Python thread
    (native threads of libraries, e.g. embedded ClickHouse's, are not used by a worker)."""
    return sys.platform == "linux" and hasattr(os, "fork") and threading.active_count() == 1


def spare_cores() -> int:
    """Cores with nothing to run over the last minute (count minus the 1-minute load average, which counts this
    process): a worker pays only on such a core. On a busy machine it is CPU taken from the others and costs
    more in all (the pages the two processes share are copied on first write, results cross a pipe)."""
    try:
        return max(0, int((os.cpu_count() or 1) - os.getloadavg()[0]))
    except OSError:  # no load average
        return 0


def ordered_map(
    fn: Callable[[Any], bytes], items: Sequence[Any], workers: int, chunk: int | None = None
) -> Iterator[bytes]:
    """`fn(item)` for each item, in order; computed by `workers` forked processes (module docstring), `chunk`
    items per frame (default `CHUNK`)."""
    if workers < 1 or not items or not can_fork():
        yield from map(fn, items)
        return
    chunk = CHUNK if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"chunk: {chunk} is not a positive number of items")
    count = (len(items) + chunk - 1) // chunk
    workers = min(workers, count)
    started: list[tuple[int, BinaryIO]] = []
    try:
        for w in range(workers):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: answer, then leave without running the parent's exit handlers
                code = 1
                try:
                    os.close(read_fd)
                    for _, stream in started:
                        stream.close()
                    _serve(fn, items, range(w, count, workers), chunk, write_fd)
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_fd)
            started.append((pid, os.fdopen(read_fd, "rb", buffering=1 << 20)))
        for k in range(count):
            pid, stream = started[k % workers]
            head = stream.read(_HEAD.size)
            if len(head) != _HEAD.size:
                raise RuntimeError(f"close worker {pid} ended without the results of items {k * chunk}..")
            kind, size = _HEAD.unpack(head)
            payload = stream.read(size)
            if len(payload) != size:
                raise RuntimeError(f"close worker {pid}: truncated results of items {k * chunk}..")
            if kind == _ERROR:
                raise _unpickled(payload)
            yield from _decode_frame(payload)
    finally:
        for pid, stream in started:
            stream.close()  # a worker still writing gets EPIPE (or is killed just below)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


def _serve(fn: Callable[[Any], bytes], items: Sequence[Any], chunks: range, size: int, fd: int) -> None:
    """Worker: each chunk's results as one frame; an exception as an error frame, then stop."""
    for k in chunks:
        try:
            payload, kind = _encode_frame([fn(item) for item in items[k * size : (k + 1) * size]]), _RESULTS
        except BaseException as exc:
            payload, kind = _pickled(exc), _ERROR
        _write_all(fd, _HEAD.pack(kind, len(payload)) + payload)
        if kind == _ERROR:
            return


def _pickled(exc: BaseException) -> bytes:
    try:
        return pickle.dumps(exc)
    except Exception:
        text = "".join(traceback.format_exception(exc)).strip()
        return pickle.dumps(RuntimeError(f"close worker: {text}"))


def _unpickled(payload: bytes) -> BaseException:
    try:
        exc = pickle.loads(payload)
    except Exception as err:
        return RuntimeError(f"close worker failed; its exception could not be read: {err}")
    return exc if isinstance(exc, BaseException) else RuntimeError(f"close worker failed: {exc!r}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
