"""A reader-side cache of the jobs' results, so that a reader (`candle summary`, `candle
status`, a `--wait` / `--watch` poll) opens O(new results) files, not one per job.

The per-job ``result.json`` files stay the truth; the cache is derived from them, written
only by readers (never by jobs), atomically (temp file + rename, so no reader ever sees a
torn one and no writer relies on O_APPEND across NFS/Lustre clients), and is rebuilt where
missing, unreadable or of another version. Deleting ``<run>/index/`` is always safe.

Layout: ``<run>/index/results-<c>.json`` for each first hex digit ``c`` of the job ids (16
shards: one new result rewrites one sixteenth), each ``{"version": 1, "entries": {job id:
[mtime_ns, size, inode, slim result]}}``; a slim result is the keys of the result the
tables read (KEPT), not its history, traceback, hosts or times.

What a refresh reads (one per poll):
- ``jobs/`` listed once (os.scandir): a job without a directory has no result (a job
  deleted by hand loses its cached result with its directory);
- each job with a directory has its result.json stat'ed: (mtime_ns, size, inode)
  unchanged is the cached entry; changed or new is read (a replacement by rename is a
  new inode even where timestamps are coarse); gone is no result;
- except, from a process's second refresh on (the polls of one `--wait` / `--watch`), a
  done or pruned result this process has already seen: candle never replaces one (a
  launch clears only results that are not done or pruned, since the supervisor's `_next`
  skips those; reuse brings results only to jobs not done). A new command stats them all
  again, so a result edited by hand between commands is seen.
So one command, or one poll, opens the results written since the cache was last brought
up to date, plus the shards it rewrites; a poll stats only the jobs not yet settled.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from candle.store.atomic import atomic_write_text

VERSION = 2  # 2: slim entries keep KEPT only
FOLDER = "index"
RESULT = "result.json"
# What the tables read of a result (summary, CV folds, UQ, status, best, --wait): the rest
# (history, traceback, hosts, times) stays in result.json, out of the cache.
KEPT = ("status", "metrics", "error", "attempt", "fold_assignment")
SETTLED = ("done", "pruned")  # candle never replaces such a result (see above)
Entry = list[Any]  # [mtime_ns, size, inode, slim result]


def slim(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in KEPT if k in result}


class ResultIndex:
    """The results of a run's jobs, refreshed from the run directory on each call."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / FOLDER
        self._jobs = os.fspath(self.root / "jobs")
        self._entries: dict[str, Entry] | None = None  # job id -> entry, all shards
        self.opened = 0  # result files read by the last refresh (tests, scale.py)
        self.present: set[str] = set()  # the job directories the last refresh saw

    # -- the cache files ----------------------------------------------------------------
    def _load(self) -> dict[str, Entry]:
        entries: dict[str, Entry] = {}
        for shard in self.folder.glob("results-*.json") if self.folder.is_dir() else ():
            try:
                data = json.loads(shard.read_bytes())
            except (OSError, ValueError):
                continue  # unreadable: those results are read again, and the shard rewritten
            if isinstance(data, dict) and data.get("version") == VERSION and isinstance(
                    data.get("entries"), dict):
                entries.update({k: v for k, v in data["entries"].items()
                                if isinstance(v, list) and len(v) == 4})
        return entries

    def _save(self, entries: dict[str, Entry], shards: set[str]) -> None:
        """Rewrite the shards that changed; a read-only run directory keeps no cache."""
        by_shard: dict[str, dict[str, Entry]] = {s: {} for s in shards}
        for job_id, entry in entries.items():
            if job_id[:1] in by_shard:
                by_shard[job_id[:1]][job_id] = entry
        with contextlib.suppress(OSError):
            self.folder.mkdir(exist_ok=True)
            for shard, part in by_shard.items():
                atomic_write_text(self.folder / f"results-{shard}.json", json.dumps(
                    {"version": VERSION, "entries": part}, separators=(",", ":")))

    # -- the refresh --------------------------------------------------------------------
    def results(self, job_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Each job's result, slim (None: none yet), from the cache and the results
        written since; the cache is brought up to date on disk where it changed."""
        trust = self._entries is not None  # settled entries this process has seen
        if self._entries is None:
            self._entries = self._load()
        entries = self._entries
        try:
            with os.scandir(self.root / "jobs") as listing:
                present = {entry.name for entry in listing}
        except FileNotFoundError:
            present = set()
        self.present = present
        changed: set[str] = set()
        out: dict[str, dict[str, Any] | None] = {}
        self.opened = 0
        for job_id in job_ids:
            cached = entries.get(job_id)
            if job_id not in present:
                if cached is not None:
                    del entries[job_id]
                    changed.add(job_id[:1])
                out[job_id] = None
                continue
            if trust and cached is not None and cached[3].get("status") in SETTLED:
                out[job_id] = cached[3]
                continue
            entry = self._look(job_id, cached)
            if entry is not cached:
                changed.add(job_id[:1])
                if entry is None:
                    entries.pop(job_id, None)
                else:
                    entries[job_id] = entry
            out[job_id] = entry[3] if entry is not None else None
        if changed:
            self._save(entries, changed)
        return out

    def _look(self, job_id: str, cached: Entry | None) -> Entry | None:
        """The job's entry now: ``cached`` itself when its result.json did not change."""
        path = f"{self._jobs}/{job_id}/{RESULT}"  # str, not Path: 10^5 of these per poll
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if cached is not None and cached[0] == stat.st_mtime_ns and cached[1] == \
                stat.st_size and cached[2] == stat.st_ino:
            return cached
        self.opened += 1
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
                again = os.fstat(handle.fileno())
        except (OSError, ValueError):
            return None  # unreadable or torn: not finished, as RunStore.result says
        if not isinstance(data, dict):
            return None
        # Key what was read (it may have been replaced between the stat and the open).
        return [again.st_mtime_ns, again.st_size, again.st_ino, slim(data)]
