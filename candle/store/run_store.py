"""The run directory on the shared filesystem: the single source of truth for a sweep.

Layout::

    <store>/<name>/
        sweep.yaml          copy of the sweep as last run
        run.json            the run's manifest (candle.store.manifest)
        plan.jsonl          one Job record per line
        jobs/<id>/params.json, log.txt, result.json, running.json, ckpt/
        leases/<owner>.json  one per live supervisor (candle.store.lease)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from candle.errors import UserError
from candle.plan.jobs import Job
from candle.spec.model import walltime_seconds
from candle.state import JobState
from candle.store.atomic import atomic_write_json, atomic_write_text, read_json
from candle.store.journal_file import append_records, read_records
from candle.store.lease import CLOCK_SKEW_SECONDS, fresh, read_expiry
from candle.store.manifest import RunManifest, read_manifest
from candle.store.plan_cache import Plan, load_plan
from candle.store.results_index import ResultIndex

RESULT = "result.json"
ATTEMPTS = "attempts.jsonl"  # earlier attempts' results, one per line
RUNNING = "running.json"
REPORT = "report.json"  # the job's latest epoch (adaptive searches)
VERDICT = "verdict.json"  # the supervisor's answer: go on, or prune
LEASE_CACHE_SECONDS = 1.0


class RunStore:
    """Reads and writes one run directory; every write is atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._leases: dict[str, tuple[float, float | None]] = {}  # owner: (read at, expiry)
        self._legacy_limit: float | None = None  # how old an ownerless marker may be
        self._plan: tuple[tuple[int, int, int], Plan] | None = None  # (stat key, plan)
        self._index: ResultIndex | None = None
        self._manifest: tuple[tuple[int, int, int], RunManifest] | None = None

    # -- creation -----------------------------------------------------------------------
    def initialise(self, sweep_text: str, manifest: RunManifest,
                   jobs: Iterable[Job] | None) -> int:
        """Write the sweep copy, run.json and plan.jsonl; return the number of jobs.

        ``jobs`` None: the plan grows as the search asks for trials (adaptive search), so
        the jobs already in it are kept."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(exist_ok=True)
        if jobs is None:
            (self.root / "plan.jsonl").touch()
            count = sum(1 for _ in self.jobs())
        else:
            lines = [json.dumps(job.to_record(), sort_keys=True) for job in jobs]
            atomic_write_text(self.root / "plan.jsonl",
                              "\n".join(lines) + ("\n" if lines else ""))
            count = len(lines)
        atomic_write_text(self.root / "sweep.yaml", sweep_text)
        atomic_write_json(self.root / "run.json", replace(manifest, jobs=count).to_record())
        return count

    def append_jobs(self, jobs: list[Job]) -> None:
        """Add an adaptive search's new jobs to the plan (one fsync'd append)."""
        append_records(self.root / "plan.jsonl", (job.to_record() for job in jobs))

    def exists(self) -> bool:
        return (self.root / "plan.jsonl").is_file() and (self.root / "run.json").is_file()

    def require(self) -> RunStore:
        if not self.exists():
            raise UserError("not a candle run directory (no plan.jsonl / run.json)",
                            file=self.root)
        return self

    # -- reading ------------------------------------------------------------------------
    def manifest(self) -> RunManifest:
        """run.json, parsed once while it stays the same file (every write is a rename):
        one command's readers (summary, its UQ and CV parts, a watch's refreshes) share it."""
        path = self.root / "run.json"
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._manifest is None or self._manifest[0] != key:
            self._manifest = (key, read_manifest(path))
        return self._manifest[1]

    def jobs(self) -> Iterator[Job]:
        """The plan's jobs; read once while plan.jsonl stays the same file (a reader asks
        for them several times, a poll once per refresh), from its columnar copy where
        that is of this plan.jsonl (candle.store.plan_cache)."""
        return iter(self.plan().jobs())

    def job_ids(self) -> list[str]:
        """The plan's job ids, in plan order (without building its Jobs)."""
        return self.plan().ids

    def plan(self) -> Plan:
        """The plan's columns (candle.store.plan_cache.Plan): a reader of 10^5 jobs that
        needs ids, points and folds only does not build the Jobs."""
        path = self.root / "plan.jsonl"
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, load_plan(self.root, key))  # index/plan.json, else parsed
        return self._plan[1]

    def results(self) -> dict[str, dict[str, Any] | None]:
        """Every planned job's result, slim (status, metrics, error, attempt, fold_assignment:
        what the tables read; results_index.KEPT), None where
        not finished: from the reader-side cache (candle.store.results_index), so a second
        call opens only the results written since the first."""
        return self._results_index().results(self.job_ids())

    def statuses(self) -> dict[str, Any]:
        """Every planned job's result status (None: no result yet), through the same cache,
        without loading any metrics (a `--wait` poll, `candle status`)."""
        return self._results_index().statuses(self.job_ids())

    def cached_results(self, job_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """These jobs' slim results as of the last ``results`` / ``statuses`` / ``states``
        (no refresh; only their shards of the cache are loaded)."""
        return self._results_index().cached(job_ids)

    def cache_key(self) -> str | None:
        """What a reader's derived cache must be keyed by: run.json, plan.jsonl and the
        result cache as of the last refresh (None: no key can be trusted now)."""
        fingerprint = self._results_index().fingerprint()
        if fingerprint is None or self._plan is None or self._manifest is None:
            return None
        return f"{self._manifest[0]}|{self._plan[0]}|{fingerprint}"

    def _results_index(self) -> ResultIndex:
        if self._index is None:
            self._index = ResultIndex(self.root)
        return self._index

    def states(self) -> dict[str, JobState]:
        """Every planned job's state (as ``state``) from the cached statuses; only the jobs
        with a directory and no result have their marker read."""
        statuses = self.statuses()
        present = self._index.present if self._index is not None else None
        states = {}
        ended, failed = _ENDED, JobState.FAILED
        for job_id, status in statuses.items():
            if status is not None:  # a str (results_index): 10^5 of these in `candle status`
                states[job_id] = ended.get(status, failed)
            elif present is not None and job_id not in present:
                states[job_id] = JobState.PENDING  # never launched: no directory
            else:
                states[job_id] = self._marker_state(job_id)
        return states

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def log_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "log.txt"

    def result(self, job_id: str) -> dict[str, Any] | None:
        path = self.job_dir(job_id) / RESULT
        try:
            data: dict[str, Any] = read_json(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable: treat as not finished, the job will re-run
        return data

    def result_mtime(self, job_id: str) -> float | None:
        """When the job's result was written (None: not yet)."""
        try:
            return (self.job_dir(job_id) / RESULT).stat().st_mtime
        except OSError:
            return None

    def state(self, job_id: str) -> JobState:
        result = self.result(job_id)
        if result is not None:
            return state_of(result)
        return self._marker_state(job_id)

    def _marker_state(self, job_id: str) -> JobState:
        """RUNNING while the job's marker is believed, LOST once its supervisor is known
        gone (the job is runnable again), PENDING without a marker."""
        path = self.job_dir(job_id) / RUNNING
        try:
            marker = read_json(path)
        except FileNotFoundError:
            return JobState.PENDING
        except (OSError, ValueError):
            return JobState.PENDING  # torn by a crash mid-write: nothing to believe
        if marker.get("host") == socket.gethostname():
            alive = pid_alive(marker.get("pid"))  # exact on the marker's own host
        elif marker.get("owner"):
            alive = self._lease_fresh(str(marker["owner"]))
        else:
            alive = self._legacy_fresh(path)
        return JobState.RUNNING if alive else JobState.LOST

    def _lease_fresh(self, owner: str) -> bool:
        """Whether ``owner``'s lease holds; each lease is read at most once a second
        (a status of 10^5 jobs reads one file per supervisor, not one per job)."""
        now = time.time()
        cached = self._leases.get(owner)
        if cached is None or now - cached[0] > LEASE_CACHE_SECONDS:
            cached = (now, read_expiry(self.root, owner))
            self._leases[owner] = cached
        return fresh(cached[1], now)

    def _legacy_fresh(self, marker: Path) -> bool:
        """A marker from before leases, written on another host: no allocation outlives
        its walltime, so it is believed until it is older than that (plus the clock skew).
        A local run has no such bound and is trusted, as it always was."""
        if self._legacy_limit is None:
            self._legacy_limit = self._walltime_limit()
        try:
            return time.time() - marker.stat().st_mtime <= self._legacy_limit
        except OSError:
            return True

    def _walltime_limit(self) -> float:
        resources = self.manifest().resources
        if resources.scheduler == "local" and not resources.walltime_given:
            return float("inf")
        try:
            return walltime_seconds(resources.walltime) + CLOCK_SKEW_SECONDS
        except ValueError:
            return float("inf")

    def log_tail(self, job_id: str, lines: int = 10) -> list[str]:
        try:
            with self.log_path(job_id).open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 16384))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    # -- writing (supervisor and rank 0 only) -------------------------------------------
    def write_params(self, job: Job) -> None:
        atomic_write_json(self.job_dir(job.id) / "params.json", job.to_record())

    def write_result(self, job_id: str, result: dict[str, Any]) -> None:
        atomic_write_json(self.job_dir(job_id) / RESULT, result)

    def clear_result(self, job_id: str) -> None:
        """Before a re-run of a failed job: its old failure must not read as current."""
        path = self.job_dir(job_id) / RESULT
        old = self.result(job_id)
        if old is not None:
            append_records(self.job_dir(job_id) / ATTEMPTS, [old])  # a torn tail is cut first
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def read_report(self, job_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = read_json(self.job_dir(job_id) / REPORT)
        except (OSError, ValueError):
            return None
        return data

    def write_verdict(self, job_id: str, step: int, prune: bool) -> None:
        atomic_write_json(self.job_dir(job_id) / VERDICT, {"step": step, "prune": prune})

    def clear_progress(self, job_id: str) -> None:
        """Before a launch: an earlier attempt's report or verdict must not be read as new."""
        for name in (REPORT, VERDICT):
            with contextlib.suppress(FileNotFoundError):
                (self.job_dir(job_id) / name).unlink()

    def mark_running(self, job_id: str, pid: int, attempt: int,
                     owner: str | None = None) -> None:
        """``owner``: the supervisor whose lease vouches for the marker (candle.store.lease)."""
        marker: dict[str, Any] = {"pid": pid, "host": socket.gethostname(), "attempt": attempt}
        if owner is not None:
            marker["owner"] = owner
        atomic_write_json(self.job_dir(job_id) / RUNNING, marker)

    def clear_running(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.job_dir(job_id) / RUNNING).unlink()

    def previous_attempts(self, job_id: str) -> int:
        try:
            return sum(1 for _ in read_records(self.job_dir(job_id) / ATTEMPTS))
        except FileNotFoundError:
            return 0

    @contextlib.contextmanager
    def supervisor_lock(self) -> Iterator[None]:
        """One live supervisor per run directory (flock: released if the process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = (self.root / ".supervisor.lock").open("a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise UserError(f"another candle run is active on this run ({owner})",
                                file=self.root) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            yield
        finally:
            handle.close()


_ENDED = {s.value: s for s in (JobState.DONE, JobState.PRUNED, JobState.INTERRUPTED,
                               JobState.TIMEOUT)}


def state_of(result: dict[str, Any]) -> JobState:
    """The state a job's result says: its status where that is an end, else failed."""
    status = result.get("status")
    return _ENDED.get(status, JobState.FAILED) if isinstance(status, str) else JobState.FAILED


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` of this host runs. A zombie does not: where PID 1 does not
    reap orphans (containers), a dead job's pid would otherwise answer for ever."""
    try:
        if int(pid) <= 0:
            return False  # 0 and -1 would ask about a whole group, or every process
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # no /proc (not Linux): the signal's answer stands
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
