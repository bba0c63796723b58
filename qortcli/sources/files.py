"""Reading recorded input files safely: regular files only, bounded in size, never blocking.

`read_regular_file(path, max_bytes)` opens without following into devices or FIFOs (a symlink to
/dev/zero, a named pipe or a socket is refused before any byte is read; opening is non-blocking so a
FIFO cannot hang), refuses a file larger than `max_bytes` by its size (a huge sparse file) and by what
it actually yields (a file that grows while read), and returns the bytes. Errors are `FileRefused`, a
usage error naming the file and why.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from qortcli.errors import UsageError

MB = 1024 * 1024


class FileRefused(UsageError):
    """An input path that is not a readable regular file within the size cap."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def max_file_bytes() -> int:
    """The size cap of input files: settings [collect] max_file_mb."""
    from qortcli.config import get_settings

    return int(get_settings().collect.max_file_mb * MB)


def check_regular_file(path: Path | str, max_bytes: int | None = None) -> os.stat_result:
    """The stat of `path` (symlinks followed) if it is a regular file within the cap, else FileRefused."""
    path = Path(path)
    limit = max_file_bytes() if max_bytes is None else max_bytes
    try:
        info = os.stat(path)
    except FileNotFoundError:
        target = f" (a symlink to missing {os.readlink(path)})" if path.is_symlink() else ""
        raise FileRefused(f"file not found: {path}{target}") from None
    except OSError as exc:
        raise FileRefused(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        via = f" (a symlink to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise FileRefused(f"{path} is {_kind(info.st_mode)}{via}: only regular files are read")
    if info.st_size > limit:
        raise FileRefused(f"{path} is {info.st_size / MB:,.1f} MB, over the {limit / MB:,.0f} MB cap "
                          "(settings [collect] max_file_mb)")
    return info


def read_regular_file(path: Path | str, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (default: settings [collect] max_file_mb)."""
    path = Path(path)
    limit = max_file_bytes() if max_bytes is None else max_bytes
    check_regular_file(path, limit)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise FileRefused(f"file not found: {path}") from None
        raise FileRefused(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # the file actually opened (it may have been swapped since the check)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{path} is {_kind(info.st_mode)}: only regular files are read")
        chunks, size = [], 0
        while True:
            try:
                chunk = os.read(fd, min(4 * MB, limit + 1 - size))
            except OSError as exc:
                raise FileRefused(f"cannot read {path}: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FileRefused(f"{path} yields more than the {limit / MB:,.0f} MB cap "
                                  "(settings [collect] max_file_mb)")
        return b"".join(chunks)
    finally:
        os.close(fd)


__all__ = ["FileRefused", "check_regular_file", "read_regular_file", "max_file_bytes", "MB"]
