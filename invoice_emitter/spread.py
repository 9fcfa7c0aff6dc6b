"""Where a close's invoice files are created on disk: `spread_folder(staging)` marks the staging folder as the top
of a directory hierarchy (`chattr +T`, the `FS_TOPDIR_FL` inode flag) and makes a folder with a random name in it,
which ext4's Orlov allocator then places in a block group of its own choosing (the fewest folders, room to spare,
searched from a start that hashes the new folder's name), not next to the staging folder's parent; the tenant
folders and files made in it follow it. The name is random because the start depends on it alone: a tenant folder
`bench` made there directly landed in the same group every close (the one the last run's files were deleted from).

Why (issue #15, measured on the 2-core bench machine, ext4 without a journal): creating an inode there scans the
block group's free inodes and skips those deleted in the last 1-6 minutes (`recently_deleted` in the kernel's
`find_inode_bit`, only checked without a journal), one buffer-cache look-up per candidate; when every free inode
of the group was deleted recently (a temporary folder of 10,000 files just removed beside it: another run, a
test suite's tmp folders), each new file scans the whole group and then takes one of them anyway. 10,000 files
of 3 kB cost 230-420 us of kernel time each in a folder under such a parent, 29-34 us in one whose parent has
the flag (`perf record`: `find_inode_bit` -> `recently_deleted` was 19 % of the whole bench's CPU); three rounds of
10,000 files made then removed: 255-297 us per file under a plain folder, 510-621 us in a flagged folder's `bench`
(the same group each time), 36-37 us in a flagged folder's randomly named one. The flag is only a placement hint
(ext4 and ext2/3 honour it; elsewhere, e.g. tmpfs, btrfs, it is refused and nothing changes); files keep their
inodes when the tenant folders are renamed into place.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import struct
import sys
from pathlib import Path

FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long): the generic encoding (x86, arm, riscv); the kernel copies an int
FS_IOC_SETFLAGS = 0x40086602  # _IOW('f', 2, long)
FS_TOPDIR_FL = 0x00020000  # "top of directory hierarchies" (include/uapi/linux/fs.h)
_FLAGS = struct.Struct("=i4x")  # an int, in a buffer as large as a long


def mark_top(folder: Path) -> bool:
    """Set `FS_TOPDIR_FL` on `folder` (a folder this process made and owns); True if it is set now. Any refusal
    (not Linux, a file system without the flag, no permission) leaves the folder as it was and returns False."""
    if sys.platform != "linux":
        return False
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        (flags,) = _FLAGS.unpack(fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(_FLAGS.size)))
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, _FLAGS.pack(flags | FS_TOPDIR_FL))
            (flags,) = _FLAGS.unpack(fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(_FLAGS.size)))
        return bool(flags & FS_TOPDIR_FL)
    except OSError:
        return False
    finally:
        os.close(fd)


def spread_folder(staging: Path) -> Path:
    """A new, empty folder with a random name in `staging` (an existing folder this process owns), after marking
    `staging` (`mark_top`): folders and files made in the returned one are placed where ext4 has room (module
    docstring). Elsewhere it is just a new folder."""
    mark_top(staging)
    folder = staging / secrets.token_hex(8)
    folder.mkdir()
    return folder
