"""Append-only JSON-lines files that survive a writer killed mid-append.

A SIGKILL (or a node crash) during an append can leave a last line without its newline.
Readers skip such a tail; before the next append the writer cuts it off (keeping the
bytes in ``<file>.torn`` for inspection), otherwise the next record would be glued to it
and the whole file would stop parsing — Optuna issue #5138's "Extra data" error.
"""

from __future__ import annotations

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
    """Append records as one write, then fsync (the caller holds the writer's lock)."""
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    with path.open("ab") as handle:
        handle.write(lines.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record; a torn last line (no newline yet) is not one."""
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            if line.strip():
                yield json.loads(line)
