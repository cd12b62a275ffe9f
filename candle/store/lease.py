"""Supervisor leases: how a reader on another node knows that a ``running.json`` is still
true.

Every supervisor (a local run, a pack allocation, an array task) keeps ONE file,
``leases/<owner>.json`` (host, pid, expiry), and a background thread renews it every
third of the lease. Each running marker names its owner, so a marker is believed while
its owner's lease is fresh. When the owner dies hard (node failure, ``scancel
--signal=KILL``) the renewals stop and its jobs read ``lost`` once the lease has run out —
at 10^5 jobs only the leases are rewritten, never the markers.

Clocks of different nodes disagree a little: a lease counts as fresh until its expiry plus
CLOCK_SKEW_SECONDS on the reader's clock.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

from candle.store.atomic import atomic_write_json, read_json

LEASES = "leases"
LEASE_SECONDS = 180.0  # renewed every 60 s: a dead supervisor's jobs read lost within ~4 min
LEASE_ENV = "CANDLE_LEASE_SECONDS"  # shortens it (tests; a site whose nodes die often)
CLOCK_SKEW_SECONDS = 60.0  # how far two nodes' clocks may disagree


def lease_seconds() -> float:
    """The lease length for a new supervisor: LEASE_SECONDS unless the environment says."""
    try:
        return max(0.1, float(os.environ.get(LEASE_ENV, "") or LEASE_SECONDS))
    except ValueError:
        return LEASE_SECONDS


def lease_path(root: Path, owner: str) -> Path:
    return root / LEASES / f"{owner}.json"


def read_expiry(root: Path, owner: str) -> float | None:
    """When ``owner``'s lease runs out (its clock); None when it has no lease (it ended,
    or its file was pruned long after it expired)."""
    try:
        return float(read_json(lease_path(root, owner))["expires"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fresh(expires: float | None, now: float | None = None) -> bool:
    """Whether a lease expiring at ``expires`` (the owner's clock) still holds here."""
    if expires is None:
        return False
    return (time.time() if now is None else now) <= expires + CLOCK_SKEW_SECONDS


def prune_expired(root: Path) -> None:
    """Remove the leases of supervisors that died without releasing them: their markers
    read lost either way. Called where one supervisor starts a run (a local run, a pack
    allocation), not by each of 10^4 array tasks (each would read every lease)."""
    folder = root / LEASES
    with contextlib.suppress(FileNotFoundError):
        for path in folder.glob("*.json"):
            if not fresh(read_expiry(root, path.stem)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


class Lease:
    """This supervisor's claim on the jobs it marks running, renewed while it lives and
    removed when it ends normally (its jobs' markers are cleared by then)."""

    def __init__(self, root: Path, seconds: float | None = None) -> None:
        self.root = Path(root)
        self.seconds = seconds if seconds is not None else lease_seconds()
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())
        self.owner = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        self.path = lease_path(self.root, self.owner)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def start(self) -> None:
        """Write the lease, then keep renewing it in a daemon thread (a supervisor that is
        SIGKILLed stops renewing with it)."""
        self.renew()
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep, name="candle-lease", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        now = time.time()
        atomic_write_json(self.path, {"owner": self.owner, "host": socket.gethostname(),
                                      "pid": os.getpid(), "seconds": self.seconds,
                                      "renewed": now, "expires": now + self.seconds})

    def _keep(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            # A failed write (a filesystem hiccup) is retried at the next turn: the lease
            # has two more turns before it runs out.
            with contextlib.suppress(OSError):
                self.renew()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
