"""Optuna's JournalStorage on a file in the run directory, made safe for a shared
filesystem and for writers that die.

- Lock: ``flock`` on ``journal.log.lock``. The kernel (or the NFS lock manager) drops it
  when its holder dies, so a resume never waits on a stale lock: Optuna's own symlink and
  open locks leave a file behind on SIGKILL (issue #5921) and, since 4.x, break it after a
  grace period — which can also break a lock still held by a slow live writer.
- Writers: only the supervisor, which holds the run's lock, so one process appends. Two
  NFS clients appending to one file can overwrite each other (issue #5138's lost
  writes): jobs on compute nodes never write the journal, they report through files.
- A torn tail (writer killed mid-append) is cut before the next append, or Optuna would
  glue the next record to it and refuse the whole file afterwards.

``optuna-dashboard <run>/optuna/journal.log`` reads the same file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from candle.store.journal_file import repair_tail

JOURNAL = Path("optuna") / "journal.log"


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / JOURNAL


class FlockLock:
    """An exclusive flock on ``<journal>.lock``; released by the kernel if we die."""

    def __init__(self, journal: Path) -> None:
        self.path = Path(str(journal) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def open_storage(run_dir: Path, *, writer: bool) -> Any:
    """The run's JournalStorage. A writer first cuts a torn tail, under the lock."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = journal_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FlockLock(path)
    if writer:
        lock.acquire()
        try:
            repair_tail(path)
        finally:
            lock.release()
    # Optuna only calls acquire() and release() on its lock object.
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))  # type: ignore[arg-type]
