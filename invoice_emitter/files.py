"""Invoice files: one JSON document per invoice, `<period>/<tenant>/<customer>.json` (indented, newline).

`DocumentFiles` takes each document as soon as it is final, while the close goes on computing and
storing. Files are written under a hidden staging folder next to the period's, `.partial-<period>/`,
and `publish()` — called once the period is recorded as closed — moves them into place: a tenant
folder that does not exist yet is renamed in one go (it appears complete or not at all); into one that
exists, each file is renamed over the old one (atomic per file). A close that fails or is killed leaves
nothing visible; the next close of the period discards the staging folder. Inside it the files are written in a
folder with a random name (`spread.spread_folder`): on ext4 it and the tenant folders made in it are placed in a
block group with room, not beside inodes deleted a moment ago (each file's creation scanned past those: up to 10x
the kernel time).

From `HELPER_FROM` documents on, a helper process (`_file_writer.py`) writes the files, fed through a
pipe by a thread (a blocked pipe write holds no GIL): creating a file is mostly kernel work (40-700 µs
per inode on the measured machine), which then runs on another core while this process goes on pricing
and storing invoices (ClickHouse inserts release the GIL too).
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from meterstream.invoice_emitter._file_writer import FRAME, write_file
from meterstream.invoice_emitter.spread import spread_folder

# A close's progress: False (quiet), True (a running count on stderr) or a callback advance(done, total or None)
# (the CLI's progress bar, deploy/cli_common.progress), called every 100 documents and once at the end.
Progress = bool | Callable[[int, int | None], None]
HELPER_FROM = 500  # fewer documents are written in-process: starting the helper costs ~30-50 ms
_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
_CHUNK = 256 * 1024  # bytes handed to the pipe at once


def document_bytes(doc: dict[str, Any]) -> bytes:
    """A document's file content."""
    return orjson.dumps(doc, option=_OPTIONS)


def encoded_document_bytes(data: bytes) -> bytes:
    """`document_bytes(orjson.loads(data))` for a document's compact JSON `data` (`schemas.invoice.encode`, which
    is `orjson.dumps` of the document's dict), re-indented as it is (`msgspec.json.format`, no objects built):
    the same bytes, a third of the CPU."""
    return msgspec.json.format(data, indent=2) + b"\n"


def file_paths(folder: Path, keys: Iterable[tuple[str, str]]) -> list[Path]:
    """`folder / tenant / "<customer>.json"` for each (tenant, customer), in order (one path join per file: a
    join costs microseconds, which a close pays per invoice)."""
    tenants: dict[str, Path] = {}
    paths: list[Path] = []
    for tenant, customer in keys:
        where = tenants.get(tenant)
        if where is None:
            where = tenants[tenant] = folder / tenant
        paths.append(where / f"{customer}.json")
    return paths


def file_name(tenant: str, customer: str) -> str:
    """`<tenant>/<customer>.json`, refused (ValueError) if it would not stay inside the tenant's folder.

    A customer id containing "/" makes subfolders, as it always did; empty, "." and ".." parts, a NUL
    and a tenant with "/" are refused: such a file would land outside the invoice folders.
    """
    parts = customer.split("/")
    if (
        not tenant
        or tenant in (".", "..")
        or "/" in tenant
        or "\0" in tenant
        or "\0" in customer
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(f"invoice of {tenant!r}/{customer!r}: tenant and customer cannot name a file in its folder")
    return f"{tenant}/{customer}.json"


class DocumentFiles:
    """The invoice files of one period: `add` every document, then `publish` (or `abort`)."""

    def __init__(self, folder: Path, progress: Progress = False, helper_from: int = HELPER_FROM) -> None:
        self.folder = folder
        self.staging = folder.parent / f".partial-{folder.name}"
        self._root = self.staging  # where the tenant folders are written: a folder in `staging` (`add`)
        self._progress = progress
        self._advance = progress if callable(progress) else None  # the CLI's progress bar: advance(done, total)
        self._helper_from = helper_from
        self._names: list[tuple[str, str]] = []  # (tenant, customer), in the order added
        self._held: list[tuple[str, bytes]] = []  # documents not handed to a helper (yet)
        self._helper: subprocess.Popen[bytes] | None = None
        self._buffer = bytearray()  # frames not yet queued for the pipe
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()  # for the pipe, in order; None ends
        self._feeder: threading.Thread | None = None
        self._feed_error: OSError | None = None

    def add(self, doc: dict[str, Any]) -> None:
        self.add_bytes(doc["tenant"], doc["customer"], document_bytes(doc))

    def add_encoded(self, tenant: str, customer: str, data: bytes) -> None:
        """`add` of the document whose compact JSON is `data` (`encoded_document_bytes`: the same file)."""
        self.add_bytes(tenant, customer, encoded_document_bytes(data))

    def add_bytes(self, tenant: str, customer: str, data: bytes) -> None:
        """The file of (tenant, customer) with the content `data`."""
        name = file_name(tenant, customer)
        if not self._names:
            if self.staging.exists():
                shutil.rmtree(self.staging)  # left by an interrupted close
            self.staging.mkdir(parents=True)
            self._root = spread_folder(self.staging)  # placed where ext4 has room (spread.py: kernel time)
        self._names.append((tenant, customer))
        if self._helper is None:
            self._held.append((name, data))
            if len(self._held) >= self._helper_from:
                self._start_helper()
        else:
            self._frame(name, data)
        if self._progress and len(self._names) % 100 == 0:
            if self._advance is not None:
                self._advance(len(self._names), None)
            elif len(self._names) % 1000 == 0:
                print(f"\r[close] {self.folder.name}: {len(self._names)} invoices", end="", file=sys.stderr)

    def publish(self) -> list[Path]:
        """Wait until every file is written, move them into place; their paths in the order added."""
        if not self._names:
            return []
        if self._helper is None:
            made: set[Path] = set()
            for name, data in self._held:
                path = self._root / name
                if path.parent not in made:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    made.add(path.parent)
                write_file(path, data)
            self._held = []
        else:
            self._finish_helper()
        tenants = dict.fromkeys(tenant for tenant, _ in self._names)
        for tenant in tenants:
            source, target = self._root / tenant, self.folder / tenant
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(source, target)
                    continue
                except OSError:  # the folder appeared meanwhile: move the files in one by one
                    pass
            _merge_into(source, target)
        shutil.rmtree(self.staging)
        if self._progress and self._names:
            n = len(self._names)
            if self._advance is not None:
                self._advance(n, n)
            else:
                print(f"\r[close] {self.folder.name}: {n}/{n} invoices", file=sys.stderr)
        return file_paths(self.folder, self._names)

    def abort(self) -> None:
        """Stop the helper and remove what was written (nothing was published)."""
        helper = self._helper
        if helper is not None:
            helper.kill()
            self._chunks.put(None)
            if self._feeder is not None:
                self._feeder.join()
            helper.wait()
            for stream in (helper.stdin, helper.stderr):
                if stream is not None and not stream.closed:
                    try:
                        stream.close()
                    except OSError:
                        pass
            self._helper = None
        shutil.rmtree(self.staging, ignore_errors=True)

    def _start_helper(self) -> None:
        script = Path(__file__).with_name("_file_writer.py")
        try:
            helper = subprocess.Popen(
                [sys.executable, str(script), str(self._root)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError:  # no interpreter to start (embedded Python): write in this process
            self._helper_from = sys.maxsize
            return
        assert helper.stdin is not None
        set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux
        if set_pipe_size is not None:
            try:
                fcntl.fcntl(helper.stdin.fileno(), set_pipe_size, 1 << 20)  # room for ~300 documents
            except OSError:
                pass
        self._helper = helper
        self._feeder = threading.Thread(target=self._feed, args=(helper.stdin,), name="invoice-files", daemon=True)
        self._feeder.start()
        for name, data in self._held:
            self._frame(name, data)
        self._held = []

    def _frame(self, name: str, data: bytes) -> None:
        encoded = name.encode()
        buffer = self._buffer
        buffer += FRAME.pack(len(encoded), len(data))
        buffer += encoded
        buffer += data
        if len(buffer) >= _CHUNK:
            self._chunks.put(bytes(buffer))
            buffer.clear()

    def _feed(self, pipe: Any) -> None:
        """Feeder thread: chunks to the helper's stdin, in order. A blocked write holds no GIL."""
        try:
            while (chunk := self._chunks.get()) is not None:
                pipe.write(chunk)
            pipe.close()
        except OSError as exc:  # BrokenPipeError: the helper stopped; its exit code says why
            self._feed_error = exc

    def _finish_helper(self) -> None:
        helper, feeder = self._helper, self._feeder
        assert helper is not None and helper.stderr is not None and feeder is not None
        if self._buffer:
            self._chunks.put(bytes(self._buffer))
            self._buffer.clear()
        self._chunks.put(None)
        feeder.join()
        message = helper.stderr.read().decode(errors="replace").strip()
        helper.stderr.close()
        code = helper.wait()
        self._helper = self._feeder = None
        if code or self._feed_error is not None:
            raise OSError(
                f"writing invoice files under {self._root} failed (helper exit {code}): {message or self._feed_error}"
            )


def write_documents(folder: Path, docs: list[dict[str, Any]], progress: Progress = False) -> list[Path]:
    """Write `docs` as the invoice files of `folder` (a period's); their paths, in the order of `docs`."""
    files = DocumentFiles(folder, progress)
    try:
        for doc in docs:
            files.add(doc)
        return files.publish()
    except BaseException:
        files.abort()
        raise


def _merge_into(source: Path, target: Path) -> None:
    for path in list(source.rglob("*.json")):
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
