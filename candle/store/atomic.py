"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, tmp_prefix: str | None = None) -> Iterator[BinaryIO]:
    """A handle to write ``path`` through: a temp file in the same directory, fsynced and
    renamed over ``path`` when the block ends, removed if it raises. For writers that
    stream (np.save) instead of handing over bytes. ``tmp_prefix``: the temp file's name
    start (default ``.<name>.``; a reader that picks files by name must not take it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix or f".{path.name}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # say which file (disk full)
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, rename."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` becomes ``src``'s content: a hard link where the filesystem allows, a copy
    otherwise, made under a temp name in ``dest``'s folder and renamed over ``dest`` (the
    temp is removed on failure). A link shares the file: only for files nobody changes in
    place afterwards."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # no dest yet
        if os.path.samefile(src, dest):
            # Already linked: renaming another link of the same file over it does nothing
            # (POSIX rename) and would leave the temp name behind.
            return
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.unlink()  # the name only: os.link wants a free one
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem, or one without hard links
            shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
