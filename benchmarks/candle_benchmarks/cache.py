"""Parsed-array cache beside the data: the second load of a wide CSV is a memory-map.

The key is file size + mtime + a hash of the first MiB, so an edited or replaced file
is parsed again. A read-only data directory (a shared dataset) falls back to a per-user
cache directory; a cache that cannot be written at all just means no cache.

Where the site names node-local storage (``local_scratch``, carried to jobs as
``CANDLE_LOCAL_SCRATCH``), a job reads the cached ``.npy`` files from a copy staged there,
made once per node by whichever job gets there first (see :func:`staged`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import LOCAL_SCRATCH_ENV

HEAD_BYTES = 1 << 20
CACHE_DIR_NAME = ".candle-cache"
STAGE_DIR_NAME = "candle-stage"
STAGE_HEADROOM = 64 << 20  # bytes left free on the scratch after a copy
_warned: set[str] = set()


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
    dirs = _cache_dirs(path)
    for directory in dirs:
        files = [directory / f"{path.name}.{key}.{name}.npy" for name in names]
        if all(f.is_file() for f in files):
            try:
                return tuple(np.load(f, mmap_mode="r") for f in staged(files))
            except (OSError, ValueError):
                break  # a damaged cache: parse again and overwrite it
    arrays = tuple(parse(path))
    for directory in dirs:
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


def staged(files: Sequence[Path]) -> list[Path]:
    """``files`` copied to node-local storage once per node, or ``files`` themselves.

    The copy lives in ``$CANDLE_LOCAL_SCRATCH/candle-stage/<digest>/`` (variables in the
    setting are expanded here, on the node, at job start). The digest names the files'
    paths, sizes and modification times, so a re-parsed cache is staged afresh and a copy
    made by an earlier allocation on a persistent scratch (``/dev/shm``) is reused. Jobs
    starting together on a node take an exclusive ``flock`` on a lock file beside the copy
    (node-local, so the lock holds); the first copies into a temporary folder and renames
    it into place, the others then find it complete. A scratch that is unset reads the
    shared files; one that is missing, full or unwritable does too, after one warning."""
    raw = os.environ.get(LOCAL_SCRATCH_ENV, "")
    if not raw or not files:
        return list(files)
    scratch = Path(os.path.expanduser(os.path.expandvars(raw)))
    if "$" in str(scratch):
        _warn(raw, "names an unset variable")
        return list(files)
    stats = [f.stat() for f in files]
    sizes = [s.st_size for s in stats]
    digest = hashlib.sha256("\0".join(
        f"{f.resolve()}:{s.st_size}:{s.st_mtime_ns}" for f, s in zip(files, stats, strict=True)
    ).encode()).hexdigest()[:16]
    root = scratch / STAGE_DIR_NAME
    final = root / digest
    copies = [final / f.name for f in files]
    try:
        if _complete(copies, sizes):
            return copies
        if not scratch.is_dir():
            raise FileNotFoundError(f"no such directory: {scratch}")
        root.mkdir(exist_ok=True)
        with open(root / f"{digest}.lock", "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released on close, or if we die
            if not _complete(copies, sizes):
                _copy_in(files, sizes, root, final)
        return copies
    except OSError as exc:
        _warn(str(scratch), exc.strerror or str(exc))
        return list(files)


def _complete(copies: Sequence[Path], sizes: Sequence[int]) -> bool:
    try:
        return all(c.stat().st_size == size for c, size in zip(copies, sizes, strict=True))
    except OSError:
        return False


def _copy_in(files: Sequence[Path], sizes: Sequence[int], root: Path, final: Path) -> None:
    """Under the lock: clear what a killed copier left, check the space, copy, rename."""
    for stale in root.glob(f".{final.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists():  # incomplete (a file removed by hand): made again
        shutil.rmtree(final)
    need = sum(sizes) + STAGE_HEADROOM
    free = shutil.disk_usage(root).free
    if free < need:
        raise OSError(28, f"{free >> 20} MiB free, {need >> 20} MiB needed")  # ENOSPC
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        for source in files:
            _copy(source, tmp / source.name)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def _warn(where: str, reason: str) -> None:
    """One line per scratch and process: the job goes on with the shared files."""
    if where not in _warned:
        _warned.add(where)
        with contextlib.suppress(OSError):
            print(f"candle: local_scratch {where}: {reason}; reading the data from the shared "
                  "filesystem", file=sys.stderr, flush=True)
