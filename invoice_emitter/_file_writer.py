"""Helper process of `invoice_emitter.files.DocumentFiles` (standard library only, started as a script).

    python _file_writer.py FOLDER

Reads frames from stdin — two little-endian uint32 (name length, data length), the UTF-8 name (a
relative path, checked by the parent), the data — and writes each as a file under FOLDER. Exits 0 at
the end of the input; an error ends it with exit code 1 and a message on stderr.
"""

from __future__ import annotations

import os
import struct
import sys

FRAME = struct.Struct("<II")


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Create (or truncate) `path` and write all of `data` with plain os calls (no buffered file object)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def main(folder: str) -> int:
    read = sys.stdin.buffer.read
    made: set[str] = set()
    while head := read(FRAME.size):
        if len(head) != FRAME.size:
            raise SystemExit("invoice files: truncated frame header")
        name_size, data_size = FRAME.unpack(head)
        name = read(name_size).decode()
        data = read(data_size)
        if len(data) != data_size:
            raise SystemExit(f"invoice files: truncated data for {name}")
        path = os.path.join(folder, name)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        write_file(path, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
