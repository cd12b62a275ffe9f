"""Job ids are the hash of the identity's canonical JSON; the plan builds that JSON from
per-point parts (issue 18) and must hash exactly what one json.dumps of it would."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from candle.plan.jobs import ID_SCHEME, JobTemplate, job_id


def reference(benchmark: str, params: dict[str, Any], fold: int | None, replica: int,
              trial: int | None = None, *, folds: int | None = None, seed: int | None = None,
              settings: dict[str, Any] | None = None, repeat: int = 0,
              node: str | None = None, parent: str | None = None) -> str:
    identity: dict[str, Any] = {"benchmark": benchmark, "params": params, "fold": fold,
                                "replica": replica, "folds": folds, "seed": seed,
                                "settings": settings or {}, "scheme": ID_SCHEME}
    if trial is not None:
        identity["trial"] = trial
    if repeat:
        identity["repeat"] = repeat
    if node is not None:
        identity.update(node=node, parent=parent)
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def test_ids_are_the_canonical_json_hash() -> None:
    rng = random.Random(0)
    for i in range(2000):
        params = {"lr": rng.random(), "b": rng.choice([1, "x", None, [1, 2], {"z": 1, "a": True}]),
                  "é": "ü", "n": rng.choice([True, 3, 2.5e-8])}
        args = ("nt3" if i % 2 else "m:f", params, rng.choice([None, 0, 3]), rng.randrange(4),
                rng.choice([None, 5]))
        kw: dict[str, Any] = {"folds": rng.choice([None, 5]),
                              "seed": rng.choice([None, 7919 * 3, 2**40]),
                              "settings": rng.choice([None, {}, {"uq": None, "ranks": 2}]),
                              "repeat": rng.choice([0, 0, 2]),
                              "node": rng.choice([None, None, "1", "2.1"])}
        if kw["node"] is not None:
            kw["parent"] = rng.choice([None, "0123456789ab"])
        assert job_id(*args, **kw) == reference(*args, **kw)


def test_a_template_makes_the_ids_job_id_makes() -> None:
    template = JobTemplate("m:f", {"epochs": 2}, 3, 2, 11, {"ranks": 1, "uq": None})
    for trial in (False, True):
        for job in template.jobs(4, {"lr": 0.1}, trial=trial):
            assert job.id == reference("m:f", job.params, job.fold, job.replica,
                                       4 if trial else None, folds=3, seed=job.seed,
                                       settings=template.settings)
