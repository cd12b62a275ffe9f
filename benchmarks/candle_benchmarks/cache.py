"""Parsed-array cache beside the data: the second load of a wide CSV is a memory-map.

The key is file size + mtime + a hash of the first MiB, so an edited or replaced file
is parsed again. A read-only data directory (a shared dataset) falls back to a per-user
cache directory; a cache that cannot be written at all just means no cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

HEAD_BYTES = 1 << 20
CACHE_DIR_NAME = ".candle-cache"


def cache_key(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(HEAD_BYTES))
    return digest.hexdigest()[:16]


def _cache_dirs(path: Path) -> list[Path]:
    user = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "candle" / "data"
    where = hashlib.sha256(str(path.resolve().parent).encode()).hexdigest()[:12]
    return [path.parent / CACHE_DIR_NAME, user / where]


def _save_npy(target: Path, array: NDArray[Any]) -> None:
    from candle.api import atomic_writer

    with atomic_writer(target) as handle:  # streamed: no bytes copy of a large array
        np.save(handle, np.ascontiguousarray(array))


def cached_arrays(
    path: Path,
    parse: Callable[[Path], Sequence[NDArray[Any]]],
    names: Sequence[str],
) -> tuple[NDArray[Any], ...]:
    """``parse(path)`` once; afterwards memory-mapped ``.npy`` files (read-only views)."""
    key = cache_key(path)
    for directory in _cache_dirs(path):
        files = [directory / f"{path.name}.{key}.{name}.npy" for name in names]
        if all(f.is_file() for f in files):
            try:
                return tuple(np.load(f, mmap_mode="r") for f in files)
            except (OSError, ValueError):
                break  # a damaged cache: parse again and overwrite it
    arrays = tuple(parse(path))
    for directory in _cache_dirs(path):
        try:
            for name, array in zip(names, arrays, strict=True):
                _save_npy(directory / f"{path.name}.{key}.{name}.npy", array)
            for stale in directory.glob(f"{path.name}.*.npy"):
                if f".{key}." not in stale.name:
                    stale.unlink(missing_ok=True)
            break
        except OSError:
            continue
    return arrays
