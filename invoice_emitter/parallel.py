"""An ordered map in forked worker processes: the close prices and issues invoices on another core while this
process numbers, stores and writes the ones before (issue #15's speed target).

`ordered_map(fn, items, workers)` yields `fn(item)` (bytes) for every item, in the order of `items`, like
`map`. With `workers` >= 1 the items are cut into chunks of `chunk`; worker `w` (a child forked from this
process, so it sees everything the caller built: plans, customers, issuing terms) computes chunks w, w +
workers, ... and writes each chunk's results to its pipe as one frame; a thread of this process reads the frames
in chunk order, up to `AHEAD` frames ahead of the caller, so a worker goes on while the caller is busy with what
it got. A worker further ahead blocks on its full pipe (backpressure), so memory stays bounded.

`fn` must be pure: it runs in a copy of this process (a child's changes are not seen here) and must not use
connections, threads or files of the parent (ClickHouse, the invoice store, the Kafka producer). An
exception raised by `fn` in a worker is raised here, when its chunk's turn comes (the exception itself when it
pickles, else a RuntimeError with its text). A worker that dies without answering raises RuntimeError.
Workers are forked only where that is safe: Linux, and no other Python thread running (`can_fork`); else the
map runs here, serially (same results).
"""

from __future__ import annotations

import fcntl
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
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


def spare_cores(since: CpuWindow | None = None) -> int:
    """Cores other work leaves idle besides the one this process runs on: a worker pays only on such a core. On a
    busy machine it is CPU taken from the others and costs more in all (the pages the two processes share are
    copied on first write, results cross a pipe).

    `since`: judged over the window from then to now (`CpuWindow`: what the machine did, minus this process's own
    CPU); without it, or where that cannot be read, from the 1-minute load average (which counts this process,
    and lags: a minute after a busy spell, even this process's own, it still counts that spell)."""
    if since is not None:
        spare = since.spare()
        if spare is not None:
            return spare
    try:
        return max(0, int((os.cpu_count() or 1) - os.getloadavg()[0]))
    except OSError:  # no load average
        return 0


_STAT = "/proc/stat"
_MIN_WINDOW = 0.05  # seconds: a shorter window says too little (the kernel counts CPU time in 10 ms ticks)


class CpuWindow:
    """The machine's CPU use from now until `spare()` (Linux `/proc/stat`), to see whether a core is idle now
    rather than over the last minute. Open it before work this process does anyway (a close's reads): its own CPU
    over the window (`os.times`, every thread of it) is taken out, and no time is spent waiting to measure."""

    def __init__(self) -> None:
        self._start = (_machine_ticks(), _own_cpu(), time.perf_counter())

    def spare(self) -> int | None:
        """Cores neither this process nor anything else used over the window, beyond the one this process goes on
        using (None: unknown, no `/proc/stat` or a window too short)."""
        (ticks0, own0, wall0), ticks1, own1, wall1 = self._start, _machine_ticks(), _own_cpu(), time.perf_counter()
        cores = os.cpu_count() or 1
        if ticks0 is None or ticks1 is None or wall1 - wall0 < _MIN_WINDOW:
            return None
        busy, total = ticks1[0] - ticks0[0], ticks1[1] - ticks0[1]
        if total <= 0:
            return None
        others = busy / total * cores - (own1 - own0) / (wall1 - wall0)  # cores busy with other processes
        return max(0, int(cores - 1 - others + 0.25))  # a core 75 % idle counts as spare


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of all cores since boot (the `cpu` line of /proc/stat), None where unreadable."""
    try:
        with open(_STAT, "rb") as f:
            fields = f.readline().split()
        values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    if len(values) < 8 or fields[0] != b"cpu":
        return None
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


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
    frames: queue.Queue[Any] = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()
    reader: threading.Thread | None = None
    try:
        for w in range(workers):
            read_fd, write_fd = os.pipe()
            _widen(read_fd)
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
        reader = threading.Thread(target=_read_frames, args=(started, count, chunk, frames, stop),
                                  name="close-workers", daemon=True)  # fmt: skip
        reader.start()
        for _ in range(count):
            frame = frames.get()
            if isinstance(frame, BaseException):
                raise frame
            kind, payload = frame
            if kind == _ERROR:
                raise _unpickled(payload)
            yield from _decode_frame(payload)
    finally:
        stop.set()
        for pid, _ in started:
            try:
                os.kill(pid, signal.SIGKILL)  # done already, or stopped here: its pipe closes, the reader ends
            except ProcessLookupError:
                pass
        if reader is not None:
            reader.join()
        for pid, stream in started:
            stream.close()
            os.waitpid(pid, 0)


PIPE_BYTES = 1 << 20  # a frame of a close (~1 MB) in one or two reads: the reader thread takes the GIL per read


def _widen(fd: int) -> None:
    """The pipe's capacity raised to `PIPE_BYTES` where Linux allows it (else it stays as it is, 64 kB): each read
    of the reader thread takes the GIL back from the caller's thread, once per 64 kB with the default size."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    try:
        fcntl.fcntl(fd, set_size, PIPE_BYTES)
    except OSError:  # above /proc/sys/fs/pipe-max-size for an unprivileged process: the default size
        pass


AHEAD = 8  # frames read ahead of the caller (~2,000 documents of a close, ~9 MB)


def _read_frames(
    started: list[tuple[int, BinaryIO]], count: int, chunk: int, frames: queue.Queue[Any], stop: threading.Event
) -> None:
    """Reader thread: the workers' frames in chunk order into `frames` (kind, payload), or the error that ends
    them; a blocked read holds no GIL. So a worker never waits while the caller is busy with a batch (storing a
    thousand invoices takes a few hundred ms, while a pipe holds a few documents): up to `AHEAD` frames wait here."""
    workers = len(started)
    for k in range(count):
        pid, stream = started[k % workers]
        frame: tuple[int, bytes] | BaseException
        try:
            head = stream.read(_HEAD.size)
            if len(head) != _HEAD.size:
                frame = RuntimeError(f"close worker {pid} ended without the results of items {k * chunk}..")
            else:
                kind, size = _HEAD.unpack(head)
                payload = stream.read(size)
                if len(payload) != size:
                    frame = RuntimeError(f"close worker {pid}: truncated results of items {k * chunk}..")
                else:
                    frame = (kind, payload)
        except (OSError, ValueError) as exc:  # the stream closed under it: the caller stopped
            frame = RuntimeError(f"close worker {pid}: results of items {k * chunk}.. unreadable: {exc}")
        while not stop.is_set():
            try:
                frames.put(frame, timeout=0.1)
                break
            except queue.Full:
                continue
        if stop.is_set() or isinstance(frame, BaseException) or frame[0] == _ERROR:
            return


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
