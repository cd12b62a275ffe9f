"""A reader-side, columnar copy of plan.jsonl (issue 18): a reader of a 10^5-job run loads
a few lists instead of parsing 10^5 JSON records.

plan.jsonl stays the truth. The copy, ``<run>/index/plan.json``, names the plan.jsonl it
was made from by (mtime_ns, size, inode): the plan only ever changes by an atomic rewrite
(a new inode) or an append (a new size), so a copy with another key is stale and is made
again, by whichever reader finds it so (atomically: temp file + rename). Each distinct
params / point_params / settings dict is stored once and shared by the jobs that have it
(a point's folds x replicas): a Job is frozen, and nothing mutates its dicts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from candle.plan.jobs import Job
from candle.store.atomic import atomic_write_text
from candle.store.journal_file import read_records

VERSION = 2  # 2: the columns of repeated CV and leave-out trees (issue 21)
NAME = "plan.json"
Key = tuple[int, int, int]  # plan.jsonl's (st_mtime_ns, st_size, st_ino)


class Plan:
    """A plan's columns at once (ids, points, folds, and each job's point params), its
    Job objects when first asked for (`candle status` needs the ids only, `candle
    summary` the columns: building 10^5 Jobs is a third of status' time)."""

    def __init__(self, ids: list[str], points: list[int], folds: list[int | None],
                 point_params: Callable[[int], dict[str, Any]],
                 build: Callable[[], list[Job]]) -> None:
        self.ids, self.points, self.folds = ids, points, folds
        self.point_params = point_params  # job index -> its point's params
        self._build: Callable[[], list[Job]] | None = build
        self._jobs: list[Job] = []

    @classmethod
    def of(cls, jobs: list[Job]) -> Plan:
        return cls([job.id for job in jobs], [job.point for job in jobs],
                   [job.fold for job in jobs], lambda i: jobs[i].point_params, lambda: jobs)

    @classmethod
    def of_columns(cls, data: dict[str, Any]) -> Plan:
        table, refs = data["tables"]["point_params"], data["refs"]["point_params"]
        return cls(data["id"], data["point"], data["fold"], lambda i: table[refs[i]],
                   lambda: _jobs(data))

    def jobs(self) -> list[Job]:
        if self._build is not None:
            self._jobs, self._build = self._build(), None
        return self._jobs


def load_plan(root: Path, key: Key) -> Plan:
    """The plan: from the copy when it is of this plan.jsonl, else parsed (and the copy
    made again where the run directory is writable)."""
    copy = root / "index" / NAME
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
        data = json.loads(copy.read_bytes())
        if data.get("version") == VERSION and data.get("key") == list(key):
            _check(data)
            return Plan.of_columns(data)
    jobs = [Job.from_record(record) for record in read_records(root / "plan.jsonl")]
    with contextlib.suppress(OSError):
        (root / "index").mkdir(exist_ok=True)
        atomic_write_text(copy, json.dumps(_columns(jobs, key), separators=(",", ":")))
    return Plan.of(jobs)


def _columns(jobs: list[Job], key: Key) -> dict[str, Any]:
    tables: dict[str, list[Any]] = {"point_params": [], "params": [], "settings": []}
    seen: dict[str, dict[str, int]] = {name: {} for name in tables}
    refs: dict[str, list[int]] = {name: [] for name in tables}
    for job in jobs:
        for name in tables:
            value = getattr(job, name)
            text = json.dumps(value, sort_keys=True, default=str)
            index = seen[name].setdefault(text, len(tables[name]))
            if index == len(tables[name]):
                tables[name].append(value)
            refs[name].append(index)
    return {"version": VERSION, "key": list(key), "id": [j.id for j in jobs],
            "point": [j.point for j in jobs], "fold": [j.fold for j in jobs],
            "folds": [j.folds for j in jobs], "replica": [j.replica for j in jobs],
            "seed": [j.seed for j in jobs], "repeat": [j.repeat for j in jobs],
            "node": [j.node for j in jobs], "parent": [j.parent for j in jobs],
            "tables": tables, "refs": refs}


def _check(data: dict[str, Any]) -> None:
    """Every column as long as the ids, every reference inside its table (else the copy
    is not used: ValueError / KeyError / TypeError / IndexError)."""
    tables, refs = data["tables"], data["refs"]
    lengths = {len(data[c]) for c in ("id", "point", "fold", "folds", "replica", "seed",
                                      "repeat", "node", "parent")}
    lengths |= {len(refs[name]) for name in ("point_params", "params", "settings")}
    if len(lengths) != 1:
        raise ValueError("plan.json: columns of different lengths")
    for name in ("point_params", "params", "settings"):
        if refs[name] and not 0 <= min(refs[name]) <= max(refs[name]) < len(tables[name]):
            raise IndexError(f"plan.json: a reference outside {name}")


def _jobs(data: dict[str, Any]) -> list[Job]:
    tables, refs = data["tables"], data["refs"]
    point_params = [tables["point_params"][i] for i in refs["point_params"]]
    params = [tables["params"][i] for i in refs["params"]]
    settings = [tables["settings"][i] for i in refs["settings"]]
    columns = (data["id"], data["point"], point_params, params, data["fold"], data["folds"],
               data["replica"], data["seed"], settings, data["repeat"], data["node"],
               data["parent"])
    return [Job(*row) for row in zip(*columns, strict=True)]
