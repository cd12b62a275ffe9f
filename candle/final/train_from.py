"""`candle train --from RUN_DIR (--best | --point N) --replicas R --out MODEL_DIR`: the
chosen point trained on all the data (no held-out fold) as one job or an ensemble of R
seeds. It is a small sweep, written as MODEL_DIR/sweep.yaml and run by the same supervisor
and schedulers as any other, so on a cluster it is submitted like one. When its jobs are
done, MODEL_DIR gets the members' models (members/replica-K.keras, hard links to the final
checkpoints) and model.json, the card that says what the model is and where it came from."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from candle import __version__
from candle.benchmark import find_benchmark
from candle.errors import UserError
from candle.final.best import BestPoint, best_point, metric_stats
from candle.plan.jobs import Job
from candle.spec.model import NOISE_PARAM, Sweep
from candle.state import JobState
from candle.store.atomic import atomic_write_text, link_or_copy
from candle.store.manifest import RunManifest
from candle.store.model_card import CardMember, ModelCard
from candle.store.run_store import RunStore

SWEEP_FILE = "sweep.yaml"
MEMBERS_DIR = "members"


@dataclass(frozen=True)
class FinalPlan:
    sweep: Sweep
    best: BestPoint
    params: dict[str, Any]  # the point's full job params (the sweep's fixed params + point)
    uq: dict[str, Any] | None
    schedule: tuple[dict[str, Any], ...] = ()  # a PBT member's replayed schedule


def plan_final(run_dir: Path, point: int | None, replicas: int, out: Path) -> FinalPlan:
    """The final model's sweep, written to OUT/sweep.yaml and validated like any sweep."""
    store = RunStore(run_dir).require()
    manifest = store.manifest()
    if manifest.pbt is not None:
        return _plan_replay(store, manifest, point, replicas, out)
    chosen = best_point(store, point)
    job = next(j for j in store.jobs() if j.point == chosen.point)
    params = {k: v for k, v in job.params.items() if k != NOISE_PARAM}
    out = out.resolve()
    _check_out(out, run_dir.resolve(), chosen.point)
    original = _original_sweep(store)
    uq = _final_uq(manifest, job.params, replicas)
    sweep = _final_sweep(
        manifest, original, out, params,
        {"method": "list", "points": [{}], "metric": manifest.metric,
         "direction": manifest.direction},
        f"# The final model of {run_dir.resolve()} point {chosen.point} ({chosen.metric} "
        f"{chosen.mean:.6g} ± {chosen.std:.2g} over {chosen.n} job(s)), written by "
        "`candle train --from`.", uq)
    return FinalPlan(sweep, chosen, params, uq)


def _final_sweep(manifest: RunManifest, original: dict[str, Any], out: Path,
                 params: dict[str, Any], search: dict[str, Any], header: str,
                 uq: dict[str, Any] | None = None) -> Sweep:
    """The final model's sweep (the run's benchmark, resources, retries and job timeout),
    validated and written to OUT/sweep.yaml under its one-line ``header``; the benchmark's
    module and relative paths resolve where the original sweep lived."""
    record: dict[str, Any] = {
        "name": out.name,
        "benchmark": manifest.benchmark,
        "params": params,
        "search": search,
        "resources": _resources(original, manifest.site_file),
        "retries": manifest.retries,
        "store": str(out.parent),
    }
    if uq is not None:
        record["uq"] = uq
    if manifest.job_timeout:
        record["training"] = {"job_timeout": manifest.job_timeout}
    text = header + "\n" + yaml.safe_dump(record, sort_keys=False, default_flow_style=None)
    sweep = _validated(text, out, manifest.base_dir)
    return replace(sweep, base_dir=manifest.base_dir)


def _plan_replay(store: RunStore, manifest: RunManifest, member: int | None, replicas: int,
                 out: Path) -> FinalPlan:
    """A population-based run's best member (or member ``member``): the hyperparameter
    schedule its final weights trained under (its segments and, through each exploit, the
    source's before), replayed from scratch by ``replicas`` members of their own seeds (a
    PBT sweep with ``search.schedule``: nobody exploits)."""
    from candle.adaptive.pbt import PbtConfig, ancestry, read_lineage
    from candle.reporting.pbt import summarise_pbt

    config = PbtConfig.from_record(manifest.pbt or {})
    summary = summarise_pbt(store)
    rows = [r for r in summary.rows if member is None or r.member == member]
    if not rows:
        raise UserError(f"no member {member} in this population (0..{config.population - 1})",
                        file=store.root)
    row = rows[0]
    if row.state != "finished" or row.score is None:
        raise UserError(f"member {row.member} has not finished its {config.epochs} epochs "
                        f"({row.state}); run the sweep to its end first", file=store.root)
    last = row.segments[-1].job
    schedule = [{"start": s["start"], "params": s["params"]}
                for s in ancestry(read_lineage(store.root), last)]
    out = out.resolve()
    _check_out(out, store.root.resolve(), row.member)
    original = _original_sweep(store)
    template = manifest.template or {}
    params = dict(template.get("params") or {})
    sweep = _final_sweep(
        manifest, original, out, params,
        {"method": "pbt", "population": replicas, "ready": config.ready,
         "space": {name: _yaml_dimension(record) for name, record in config.space.items()},
         "schedule": schedule, "metric": manifest.metric, "direction": manifest.direction,
         "seed": config.seed},
        f"# The final model of {store.root.resolve()} point {row.member} ({manifest.metric} "
        f"{row.score:.6g}: member {row.member}'s schedule, replayed), written by "
        "`candle train --from`.")
    best = BestPoint(str(store.root), row.member, dict(row.params), manifest.metric,
                     manifest.direction, float(row.score), 0.0, 1,
                     {manifest.metric: {"mean": float(row.score), "std": 0.0, "n": 1}},
                     note=f"population-based training: member {row.member}'s schedule")
    return FinalPlan(sweep, best, {**params, **row.params}, None, tuple(schedule))


def _yaml_dimension(record: dict[str, Any]) -> Any:
    """A dimension record (candle.adaptive.config) as a sweep writes it."""
    if "choice" in record:
        return list(record["choice"])
    return {key: value for key, value in record.items() if key != "log" or value}


def _validated(text: str, out: Path, base_dir: Path) -> Sweep:
    """Validate the final sweep before OUT exists (a refusal leaves nothing behind), then
    write it as OUT/sweep.yaml."""
    from candle.spec import load_sweep

    out.parent.mkdir(parents=True, exist_ok=True)
    trial = out.parent / f".{out.name}.sweep.yaml.tmp"
    try:
        atomic_write_text(trial, text)
        with _importable(base_dir):
            sweep = load_sweep(trial)
    finally:
        trial.unlink(missing_ok=True)
    out.mkdir(exist_ok=True)
    path = out / SWEEP_FILE
    atomic_write_text(path, text)
    return replace(sweep, source=path.resolve())


def _check_out(out: Path, run_dir: Path, point: int) -> None:
    """OUT is new, empty, or this same final model (a re-run resumes it)."""
    if out == run_dir or run_dir in out.parents:
        raise UserError("--out must be outside the run directory", file=out)
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError("--out exists and is not a directory", file=out)
    sweep_file = out / SWEEP_FILE
    if sweep_file.is_file():
        first = sweep_file.read_text().splitlines()[:1]
        if first and first[0].startswith(f"# The final model of {run_dir} point {point} "):
            return
        raise UserError("--out holds another final model (see its sweep.yaml); choose "
                        "another directory", file=out)
    if any(out.iterdir()):
        raise UserError("--out exists and is not empty; choose a new directory", file=out)


def _original_sweep(store: RunStore) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load((store.root / "sweep.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _resources(original: dict[str, Any], site_file: Path | None) -> dict[str, Any]:
    """The run's resources as its sweep gave them; a named site becomes its file, since
    the final sweep lives elsewhere."""
    resources = dict(original.get("resources") or {})
    if site_file is not None:
        resources["site"] = str(site_file)
    return resources


def _final_uq(manifest: RunManifest, job_params: dict[str, Any], replicas: int
              ) -> dict[str, Any] | None:
    """R seeds (uq.method ensemble). Kept from the run: a predicted-spread head (loss), MC
    dropout (its passes), and a noise level the point was trained with. A bootstrap run's
    final members train on all the data (seeds only)."""
    method, uq = manifest.uq_method, manifest.uq or {}
    record: dict[str, Any] = {"replicas": replicas, "method": "ensemble"}
    if method == "mc_dropout":
        record.update(method="mc_dropout", samples=int(uq.get("samples") or 20))
    level = job_params.get(NOISE_PARAM)
    if method == "noise" and level:
        record.update(method="noise", noise_levels=[level],
                      noise=str(uq.get("noise") or "features"))
    if uq.get("loss"):
        record["loss"] = uq["loss"]
    if replicas == 1 and record["method"] == "ensemble" and "loss" not in record:
        return None
    return record


@contextlib.contextmanager
def _importable(base_dir: Path) -> Iterator[None]:
    """A user's benchmark module imports from the original sweep's folder."""
    sys.path.insert(0, str(base_dir))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(base_dir))


def write_card(plan: FinalPlan, source_run: Path) -> ModelCard:
    """Once the final sweep's jobs are done: link the members' models into OUT/members and
    write OUT/model.json. UserError when a member is missing or failed."""
    sweep = plan.sweep
    store = RunStore(sweep.run_dir).require()
    members: list[CardMember] = []
    values: dict[str, list[float]] = {}
    digests: set[str] = set()
    problems = []
    finished = []
    for job in _member_jobs(store):
        result = store.result(job.id)
        if result is None or result.get("status") != JobState.DONE:
            state = result.get("status") if result else "not finished"
            problems.append(f"job {job.id} (replica {job.replica}) is {state}")
        finished.append((job, result or {}))
    if problems:
        raise UserError(f"{len(problems)} member(s) did not finish ({problems[0]}); "
                        "see `candle status`, then run the same command again",
                        file=store.root)
    (store.root / MEMBERS_DIR).mkdir(exist_ok=True)
    for job, result in finished:
        model = _link_member(store, job.id, job.replica, result)
        metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items()
                   if isinstance(v, int | float)}
        for name, value in metrics.items():
            values.setdefault(name, []).append(value)
        digest = result.get("data_digest")
        if digest:
            digests.add(str(digest))
        members.append(CardMember(job.id, job.replica, job.seed, model, metrics,
                                  result.get("best_epoch"), digest))
    linked = {m.model for m in members}
    for stale in (store.root / MEMBERS_DIR).glob("*.keras"):  # an earlier, larger ensemble
        if f"{MEMBERS_DIR}/{stale.name}" not in linked:
            stale.unlink()
    definition = find_benchmark(sweep.benchmark, sweep.base_dir)
    defaults = definition.defaults() if definition is not None else {}
    best = plan.best
    card = ModelCard(
        benchmark=sweep.benchmark, params={**defaults, **plan.params},
        members=tuple(sorted(members, key=lambda m: m.replica)), metrics=metric_stats(values),
        source={"run": str(source_run.resolve()), "point": best.point,
                "metric": best.metric, "direction": best.direction, "value": best.mean,
                "std": best.std, "jobs": best.n, "params": best.params,
                **({"schedule": list(plan.schedule)} if plan.schedule else {})},
        base_dir=str(sweep.base_dir),
        benchmark_version=definition.version if definition is not None else 0,
        uq=plan.uq, data_digest=digests.pop() if len(digests) == 1 else None,
        candle_version=__version__, created=time.time())
    card.write(store.root)
    return card


def _member_jobs(store: RunStore) -> list[Job]:
    """The jobs whose models are the members: every job, or (a replayed PBT schedule) each
    member's last segment, as that member's replica."""
    jobs = list(store.jobs())
    if store.manifest().pbt is None:
        return jobs
    from candle.adaptive.pbt import MEMBER, PbtConfig

    config = PbtConfig.from_record(store.manifest().pbt or {})
    last = [job for job in jobs if int(job.params["epochs"]) >= config.epochs]
    for member in range(config.population):
        if not any(int(job.params[MEMBER]) == member for job in last):
            raise UserError(f"member {member} has not reached its last segment; run the "
                            "same command again", file=store.root)
    return [replace(job, replica=int(job.params[MEMBER])) for job in last]


def _link_member(store: RunStore, job_id: str, replica: int, result: dict[str, Any]) -> str:
    """members/replica-K.keras: a hard link to the job's final model (a copy where the
    filesystem has no links), so MODEL_DIR reads as a model, not as a run. "" when the job
    names no model file: a user's training function keeps its own (in its job directory)."""
    model_file = result.get("model_file")
    if not model_file:
        return ""
    source = store.job_dir(job_id) / str(model_file)
    name = f"{MEMBERS_DIR}/replica-{replica}.keras"
    link_or_copy(source, store.root / name)
    return name
