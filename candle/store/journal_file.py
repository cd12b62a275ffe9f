"""Append-only JSON-lines files that survive a writer killed mid-append.

A SIGKILL (or a node crash) during an append can leave a last line without its newline.
Readers skip such a tail; before the next append the writer cuts it off (keeping the
bytes in ``<file>.torn`` for inspection), otherwise the next record would be glued to it
and the whole file would stop parsing — Optuna issue #5138's "Extra data" error.

Appenders take turns: ``append_records`` holds an exclusive ``flock`` on the file from
the tail repair to the fsync. O_APPEND alone is not enough: two processes repairing the
same torn tail at once could each cut the file at the length they read, erasing the
other's fresh record, and a write() the kernel splits (a signal, a full disk, an NFS
client) would let another process's record land in the middle of this one. An append
that fails (disk full) is cut back off, so a batch is in the file whole or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_CHUNK = 65536


def repair_tail(path: Path) -> int:
    """Cut bytes after the last newline; return how many were cut. Writers only, locked."""
    try:
        handle = path.open("rb+")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - _CHUNK)
            handle.seek(start)
            chunk = handle.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep == size:
            return 0
        handle.seek(keep)
        torn = handle.read()
        with path.with_name(path.name + ".torn").open("ab") as aside:
            aside.write(torn + b"\n")
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
        return size - keep


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records, then fsync: whole, under an exclusive flock on the file, so any
    number of processes may append at once (the flock dies with its holder)."""
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
    if not data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        repair_tail(path)
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # not half a batch: its first lines would count
            if isinstance(exc, OSError) and exc.filename is None:  # say which file
                raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
            raise
    finally:
        os.close(fd)  # and with it the flock


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record; a torn last line (no newline yet) is not one."""
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            if line.strip():
                yield json.loads(line)
