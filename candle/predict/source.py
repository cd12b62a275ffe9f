"""What `candle predict SOURCE` predicts with: the trained member models of a model
directory (model.json), or of one point of a run (its fold and replica jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candle.benchmark import find_benchmark
from candle.errors import UserError
from candle.state import JobState
from candle.store.model_card import CARD, read_card
from candle.store.run_store import RunStore


@dataclass(frozen=True)
class Member:
    """One trained model: its file (absolute) and how it was made."""

    model: Path
    job_id: str
    seed: int
    replica: int


@dataclass(frozen=True)
class PredictSource:
    benchmark: str
    base_dir: Path  # where the benchmark's module and relative data paths resolve
    params: dict[str, Any]  # resolved params the members trained with (defaults included)
    members: tuple[Member, ...]
    uq: dict[str, Any] | None  # the members' UQ method and options (method, samples, loss)
    label: str  # "MODEL_DIR" or "RUN_DIR point N": what messages call it


def resolve_source(path: Path, point: int | None = None) -> PredictSource:
    """A model directory (``point`` None) or a run directory's point ``point``."""
    path = Path(path)
    if (path / CARD).is_file():
        if point is not None:
            raise UserError("--point is for a run directory; this is a model directory "
                            f"({CARD})", file=path)
        return _from_card(path)
    if not (path / "run.json").is_file():
        raise UserError(f"neither a model directory ({CARD}) nor a run directory (run.json)",
                        file=path)
    if point is None:
        raise UserError("a run directory needs --point N (see `candle best` or `candle "
                        "summary` for the points)", file=path)
    return _from_run(path, point)


def _from_card(model_dir: Path) -> PredictSource:
    card = read_card(model_dir)
    if any(not m.model for m in card.members):
        raise UserError(f"its members saved no model files ({card.benchmark} is a user "
                        "model: its training function keeps its own models, in "
                        "jobs/<id>/); candle predicts with the built-in benchmarks' models",
                        file=model_dir)
    members = tuple(Member(model_dir / m.model, m.job_id, m.seed, m.replica)
                    for m in card.members)
    _check_files(members, model_dir)
    return PredictSource(card.benchmark, Path(card.base_dir), dict(card.params), members,
                         card.uq, str(model_dir))


def _from_run(run_dir: Path, point: int) -> PredictSource:
    store = RunStore(run_dir).require()
    manifest = store.manifest()
    jobs = [job for job in store.jobs() if job.point == point]
    if not jobs:
        points = sorted({job.point for job in store.jobs()})
        shown = f"{points[0]}..{points[-1]}" if points else "none"
        raise UserError(f"no point {point} in this run (its points: {shown})", file=run_dir)
    members = []
    for job in jobs:
        result = store.result(job.id)
        if result is None or result.get("status") != JobState.DONE:
            continue
        model_file = result.get("model_file")
        if not model_file:
            raise UserError(f"job {job.id} of point {point} saved no model file (a user "
                            "model's training function keeps its own models)", file=run_dir)
        members.append(Member(store.job_dir(job.id) / str(model_file), job.id, job.seed,
                              job.replica))
    if not members:
        raise UserError(f"point {point} has no finished job to predict with", file=run_dir)
    _check_files(tuple(members), run_dir)
    definition = find_benchmark(manifest.benchmark, manifest.base_dir)
    defaults = definition.defaults() if definition is not None else {}
    settings = jobs[0].settings or {}
    return PredictSource(manifest.benchmark, manifest.base_dir,
                         {**defaults, **jobs[0].params}, tuple(members),
                         settings.get("uq") if settings else manifest.uq,
                         f"{run_dir} point {point}")


def _check_files(members: tuple[Member, ...], where: Path) -> None:
    missing = [m for m in members if not m.model.is_file()]
    if missing:
        raise UserError(f"{len(missing)} member model file(s) are missing, e.g. "
                        f"{missing[0].model}", file=where)
