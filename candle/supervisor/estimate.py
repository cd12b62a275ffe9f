"""How long a job will take, from the jobs of the same size that already finished, so a
packed allocation does not start a job its remaining walltime cannot finish.

Every finished job's wall time (launch to exit, start-up included) is appended to
``<run>/durations.jsonl`` by the supervisor (the run's one writer), keyed by the job's
params: folds and replicas of one point share a key and a size. A job resumed from a
checkpoint needs only its remaining epochs' share of that time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from candle.plan.jobs import Job
from candle.store.journal_file import append_records, read_records

DURATIONS = "durations.jsonl"
SAFETY = 1.2  # jobs of one size still vary (I/O, a busy node): keep a margin


def size_key(job: Job) -> str:
    return json.dumps(job.params, sort_keys=True, default=str)


class Durations:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / DURATIONS
        self.by_key: dict[str, float] = {}
        self.longest = 0.0
        if self.path.is_file():
            for record in read_records(self.path):
                self._add(str(record["key"]), float(record["seconds"]))

    def _add(self, key: str, seconds: float) -> None:
        self.by_key[key] = max(seconds, self.by_key.get(key, 0.0))
        self.longest = max(self.longest, seconds)

    def record(self, job: Job, seconds: float, result: dict[str, Any] | None) -> None:
        """A done job's wall time; only whole runs (a resumed one ran part of its epochs)."""
        if result and result.get("resumed_from_epoch"):
            return
        key = size_key(job)
        append_records(self.path, [{"key": key, "seconds": round(seconds, 3), "job": job.id}])
        self._add(key, seconds)

    def estimate(self, job: Job, job_dir: Path) -> float | None:
        """Seconds ``job`` needs (with a margin), or None before any job has finished."""
        seconds = self.by_key.get(size_key(job)) or self.longest
        if not seconds:
            return None
        return seconds * remaining_fraction(job, job_dir) * SAFETY


def remaining_fraction(job: Job, job_dir: Path) -> float:
    """The share of its epochs a job still has to train: 1 without a checkpoint."""
    epochs = job.params.get("epochs")
    try:
        state = json.loads((job_dir / "ckpt" / "state.json").read_text())
        done = int(state["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0
    if not isinstance(epochs, int) or epochs <= 0:
        return 1.0
    return max(0.0, epochs - done) / epochs
