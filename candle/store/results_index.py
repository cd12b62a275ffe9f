"""A reader-side cache of the jobs' results, so that a reader (`candle summary`, `candle
status`, a `--wait` / `--watch` poll) opens O(new results) files, not one per job.

The per-job ``result.json`` files stay the truth; the cache is derived from them, written
only by readers (never by jobs), atomically (temp file + rename, so no reader ever sees a
torn one and no writer relies on O_APPEND across NFS/Lustre clients), and is rebuilt where
missing, unreadable or of another version. Deleting ``<run>/index/`` is always safe.

Layout: 16 shards by the first character of the job id (one new result rewrites one
sixteenth), each two files written with the same generation token:
- ``states-<c>.json``: columns ``id``, ``mtime``, ``size``, ``ino`` (of result.json as
  read), ``dir`` (the job directory's inode) and ``status``: what a refresh and `candle
  status` need, decoded in a few milliseconds per 10^4 jobs;
- ``results-<c>.json``: ``{job id: slim result}``, the keys the tables read (KEPT), not
  its history, traceback, hosts or times; loaded only by the readers that want metrics
  (summary, best), and only for the shards they ask about.
A results file whose generation is not its states file's (a reader killed between the
two renames) is rebuilt from that shard's result.json files.

What a refresh reads (one per command, one per poll):
- ``jobs/`` listed once (os.scandir, which gives each job directory's inode without a
  stat): a job without a directory has no result (a job deleted by hand loses its cached
  result with its directory);
- a done or pruned result is trusted as cached while its job directory is the same one
  (same inode): candle never replaces such a result (a launch clears only results that
  are neither, since the supervisor's ``_next`` skips those; reuse brings results only to
  jobs not done), so a finished 10^5-job run is summarised without 10^5 stats (on a cold
  cache each is a disk or metadata-server read: 10 s of 12 at 100k here);
- every other job with a directory has its result.json stat'ed: (mtime_ns, size, inode)
  unchanged is the cached entry; changed or new is read (a replacement by rename is a new
  inode even where timestamps are coarse); gone is no result.
So one command, or one poll, opens the results written since the cache was last brought
up to date, plus the shards it rewrites. A done result edited by hand in place is not
seen until ``<run>/index/`` is deleted (always safe: it is rebuilt from the results).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

from candle.store.atomic import atomic_write_text

VERSION = 4  # 2: slim entries; 3: + the job directory's inode; 4: states / results files
FOLDER = "index"
RESULT = "result.json"
# What the tables read of a result (summary, CV folds, UQ, status, best, --wait): the rest
# (history, traceback, hosts, times) stays in result.json, out of the cache.
KEPT = ("status", "metrics", "error", "attempt", "fold_assignment")
SETTLED = ("done", "pruned")  # candle never replaces such a result (see above)
COLUMNS = ("mtime", "size", "ino", "dir", "status")
Key = tuple[int, int, int, int, Any]  # result.json's mtime_ns, size, inode; dir inode; status
Slim = dict[str, Any]


def slim(result: dict[str, Any]) -> Slim:
    return {k: result[k] for k in KEPT if k in result}


def shard_of(job_id: str) -> str:
    return job_id[:1]


class ResultIndex:
    """The results of a run's jobs, refreshed from the run directory on each call."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / FOLDER
        self._jobs = os.fspath(self.root / "jobs")
        self._keys: dict[str, Key] | None = None  # job id -> key, all shards
        self._generation: dict[str, str] = {}  # shard -> its states file's generation
        self._slims: dict[str, dict[str, Slim]] = {}  # the shards whose results are loaded
        self._rebuilt: set[str] = set()  # shards read again, to be written
        self._unsaved = False  # a change this process could not write (read-only run)
        self.opened = 0  # result files read by the last refresh (tests, scale.py)
        self.present: Collection[str] = ()  # the job directories the last refresh saw

    # -- reading ------------------------------------------------------------------------
    def statuses(self, job_ids: list[str]) -> dict[str, Any]:
        """Each job's result status (None: no result yet; "": a result without one),
        refreshed; no metrics loaded."""
        keys = self._refresh(job_ids)
        return {job_id: key[4] if (key := keys.get(job_id)) is not None else None
                for job_id in job_ids}

    def results(self, job_ids: list[str]) -> dict[str, Slim | None]:
        """Each job's result, slim (None: none yet), from the cache and the results
        written since; the cache is brought up to date on disk where it changed."""
        self._refresh(job_ids)
        return self.cached(job_ids)

    def cached(self, job_ids: list[str]) -> dict[str, Slim | None]:
        """As of the last refresh: each job's slim result, loading only its shard."""
        keys = self._keys or {}
        merged: dict[str, Slim] = {}  # a shard's results hold the ids its keys hold
        for shard in {shard_of(job_id) for job_id in job_ids}:
            merged.update(self._shard(shard))
        out: dict[str, Slim | None] = {
            job_id: merged.get(job_id) if job_id in keys else None for job_id in job_ids}
        if self._rebuilt:
            self._save(self._rebuilt)
            self._rebuilt = set()
        return out

    def fingerprint(self) -> str | None:
        """Names the cache's content as of the last refresh (the generations of its
        shards; a new result anywhere gives a new one), so that what is derived from it
        (candle.reporting.summary_cache) can be kept; None where the cache on disk is not
        what this process read (a change it could not write)."""
        if self._keys is None or self._unsaved or self._rebuilt:
            return None
        shards = {shard_of(job_id) for job_id in self._keys}
        if not shards <= self._generation.keys():
            return None
        return ",".join(f"{s}:{self._generation[s]}" for s in sorted(shards))

    # -- the refresh --------------------------------------------------------------------
    def _refresh(self, job_ids: list[str]) -> dict[str, Key]:
        if self._keys is None:
            self._keys = self._load_keys()
        keys = self._keys
        try:
            with os.scandir(self._jobs) as listing:
                present = {entry.name: entry.inode() for entry in listing}
        except FileNotFoundError:
            present = {}
        self.present = present.keys()
        fresh: dict[str, Slim | None] = {}  # read now (None: its result is gone)
        self.opened = 0
        for job_id in job_ids:
            cached = keys.get(job_id)
            folder = present.get(job_id)
            if folder is None:
                if cached is not None:
                    del keys[job_id]
                    fresh[job_id] = None
                continue
            if cached is not None and cached[3] == folder and cached[4] in SETTLED:
                continue
            found = self._look(job_id, cached, folder)
            if found is None:
                if cached is not None:
                    del keys[job_id]
                    fresh[job_id] = None
            elif found[1] is not None:
                keys[job_id] = found[0]
                fresh[job_id] = found[1]
        if fresh:
            self._apply(fresh)
        return keys

    def _look(self, job_id: str, cached: Key | None, folder: int
              ) -> tuple[Key, Slim | None] | None:
        """(key, slim) of the job's result now; slim None: ``cached`` is still it. None:
        no result (or an unreadable, torn one: not finished, as RunStore.result says)."""
        path = f"{self._jobs}/{job_id}/{RESULT}"  # str, not Path: 10^5 of these per poll
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if cached is not None and cached[:4] == (stat.st_mtime_ns, stat.st_size,
                                                 stat.st_ino, folder):
            return cached, None
        return self._read(job_id, folder)

    def _read(self, job_id: str, folder: int) -> tuple[Key, Slim] | None:
        self.opened += 1
        try:
            with open(f"{self._jobs}/{job_id}/{RESULT}", "rb") as handle:
                data = json.loads(handle.read())
                again = os.fstat(handle.fileno())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        # Key what was read (it may have been replaced between the stat and the open).
        kept = slim(data)
        status = kept.get("status")  # "" where it is not a string: read as failed
        return (again.st_mtime_ns, again.st_size, again.st_ino, folder,
                status if isinstance(status, str) else ""), kept

    def _apply(self, fresh: dict[str, Slim | None]) -> None:
        """Bring the changed shards' results up to date, and write them."""
        changed: dict[str, dict[str, Slim | None]] = {}
        for job_id, value in fresh.items():
            changed.setdefault(shard_of(job_id), {})[job_id] = value
        for shard, values in changed.items():
            slims = self._shard(shard, read_now=values)
            for job_id, value in values.items():
                if value is None:
                    slims.pop(job_id, None)
                else:
                    slims[job_id] = value
        self._save(set(changed) | self._rebuilt)
        self._rebuilt = set()

    # -- the cache files ----------------------------------------------------------------
    def _load_keys(self) -> dict[str, Key]:
        keys: dict[str, Key] = {}
        for path in self.folder.glob("states-*.json") if self.folder.is_dir() else ():
            try:
                data = json.loads(path.read_bytes())
                if data.get("version") != VERSION:
                    continue
                ids, columns = data["id"], [data[c] for c in COLUMNS]
                if any(len(c) != len(ids) for c in columns) or not isinstance(
                        data["generation"], str):
                    continue
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # unreadable: those results are read again, and the shard rewritten
            keys.update(zip(ids, zip(*columns, strict=True), strict=True))
            self._generation[path.stem.removeprefix("states-")] = data["generation"]
        return keys

    def _shard(self, shard: str, read_now: Collection[str] = ()) -> dict[str, Slim]:
        """The shard's slim results: from its results file where that is of the states
        file loaded, else read again from the result.json files the keys name (but those
        in ``read_now``: the refresh has just read them)."""
        if shard in self._slims:
            return self._slims[shard]
        slims: dict[str, Slim] | None = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            data = json.loads((self.folder / f"results-{shard}.json").read_bytes())
            if data.get("version") == VERSION and data["generation"] == \
                    self._generation.get(shard) and isinstance(data["entries"], dict):
                slims = data["entries"]
        if slims is None:
            slims = self._rebuild(shard, read_now)
        self._slims[shard] = slims
        return slims

    def _rebuild(self, shard: str, read_now: Collection[str]) -> dict[str, Slim]:
        """A shard's results, read again from its result.json files (its results file was
        missing, torn, or of another generation); the caller writes them."""
        keys = self._keys if self._keys is not None else {}
        slims: dict[str, Slim] = {}
        for job_id in [k for k in keys if shard_of(k) == shard and k not in read_now]:
            found = self._read(job_id, keys[job_id][3])
            if found is None:
                del keys[job_id]
            else:
                keys[job_id], slims[job_id] = found
        self._rebuilt.add(shard)
        return slims

    def _save(self, shards: set[str]) -> None:
        """Rewrite the shards' two files, results first: a reader killed between the
        renames leaves a states file whose generation its results file lacks (rebuilt).
        A read-only run directory keeps no cache."""
        keys = self._keys if self._keys is not None else {}
        by_shard: dict[str, list[str]] = {shard: [] for shard in shards}
        for job_id in keys:  # one pass, not one per shard
            if (ids := by_shard.get(shard_of(job_id))) is not None:
                ids.append(job_id)
        try:
            self.folder.mkdir(exist_ok=True)
            for shard, ids in by_shard.items():
                generation = uuid.uuid4().hex
                slims = self._slims.get(shard, {})
                atomic_write_text(self.folder / f"results-{shard}.json", json.dumps(
                    {"version": VERSION, "generation": generation,
                     "entries": {k: slims[k] for k in ids if k in slims}},
                    separators=(",", ":")))
                rows = [keys[k] for k in ids]
                columns = {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}
                atomic_write_text(self.folder / f"states-{shard}.json", json.dumps(
                    {"version": VERSION, "generation": generation, "id": ids, **columns},
                    separators=(",", ":")))
                self._generation[shard] = generation
        except OSError:
            self._unsaved = True  # for good: this process' cache is not the one on disk
