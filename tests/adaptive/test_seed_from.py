"""search.seed_from for an Optuna search: a previous run's results (or a CSV's rows) are the
study's first finished trials, points outside the new space are skipped and counted, the
budget counts new trials only, and a resumed run does not seed twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from candle.adaptive.config import OptunaConfig
from candle.adaptive.journal import open_storage
from candle.adaptive.seed import Expected, SeedPoint, encode, seed_study
from candle.adaptive.study import SEEDED_ATTR, used_budget
from candle.spec.model import Choice, Dimension, IntRange, SearchSpec, Uniform
from tests.conftest import ROOT, CliResult, run_candle, write

MODEL = ROOT / "tests" / "adaptive" / "models" / "quad.py"


def loss(x: float, y: float) -> float:
    return (x - 0.3) ** 2 + (y - 0.5) ** 2


def trainings(marker: Path) -> list[dict[str, Any]]:
    if not marker.exists():
        return []
    return [json.loads(line) for line in marker.read_text().splitlines()]


def grid_run(tmp_path: Path) -> Path:
    """A finished grid of 3 x 2 points; returns its run directory."""
    (tmp_path / "quad.py").write_text(MODEL.read_text())
    sweep = write(tmp_path / "grid.yaml", f"""
        name: first
        benchmark: "quad:train"
        params: {{marker: {tmp_path / "trained.log"}}}
        search:
          method: grid
          space: {{x: [0.1, 0.2, 0.3], y: [0.5, 0.9]}}
        resources: {{scheduler: local, max_concurrent: 4}}
        store: runs
    """)
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert len(trainings(tmp_path / "trained.log")) == 6
    return tmp_path / "runs" / "first"


def optuna_sweep(tmp_path: Path, seed_from: str, *, trials: int = 4,
                 metric: str = "val_loss", direction: str = "minimize",
                 params: str = "") -> Path:
    (tmp_path / "quad.py").write_text(MODEL.read_text())
    return write(tmp_path / "study.yaml", f"""
        name: study
        benchmark: "quad:train"
        params: {{marker: {tmp_path / "trained.log"}{params}}}
        search:
          method: optuna
          seed_from: {seed_from}
          trials: {trials}
          seed: 1
          metric: {metric}
          direction: {direction}
          space:
            x: {{uniform: [0.0, 0.25]}}
            y: [0.5, 0.9]
        resources: {{scheduler: local, max_concurrent: 2}}
        store: runs
    """)


def study_of(run_dir: Path) -> Any:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="study", storage=open_storage(run_dir, writer=False))


def flat(text: str) -> str:
    """stderr with its line wrapping undone (a long path may wrap a notice)."""
    return " ".join(text.split())


@pytest.mark.slow
def test_a_study_starts_from_a_previous_runs_results(tmp_path: Path) -> None:
    first = grid_run(tmp_path)
    sweep = optuna_sweep(tmp_path, "runs/first", trials=4)
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    # x = 0.3 is outside [0, 0.25]: those 2 of the 6 points are skipped, and said so.
    assert (f"seeded 4 finished trial(s) from {first}; 2 outside the search space skipped"
            in flat(done.stderr)), done.stderr
    run_dir = tmp_path / "runs" / "study"
    study = study_of(run_dir)
    seeded = [t for t in study.trials if SEEDED_ATTR in t.user_attrs]
    new = [t for t in study.trials if SEEDED_ATTR not in t.user_attrs]
    assert len(seeded) == 4 and len(new) == 4  # the budget counts new trials only
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert sorted((t.params["x"], t.params["y"]) for t in seeded) == [
        (0.1, 0.5), (0.1, 0.9), (0.2, 0.5), (0.2, 0.9)]
    for trial in seeded:
        assert trial.value == pytest.approx(loss(trial.params["x"], trial.params["y"]))
    assert max(t.number for t in seeded) < min(t.number for t in new)  # seeded first
    assert used_budget(study) == 4
    assert len(trainings(tmp_path / "trained.log")) == 6 + 4  # only the new trials trained
    summary = json.loads(run_candle("summary", str(run_dir), "--format", "json").stdout)
    assert summary["used"] == 4 and summary["trials"] == 4 and len(summary["rows"]) == 8
    notes = [row["note"] for row in summary["rows"]]
    assert sum(note.startswith("seeded from") for note in notes) == 4

    again = run_candle("run", str(sweep))
    assert again.returncode == 0, again.stderr
    assert "not seeded again" in flat(again.stderr)
    assert len(study_of(run_dir).trials) == 8  # neither seeded twice nor a trial more
    assert len(trainings(tmp_path / "trained.log")) == 10


@pytest.mark.slow
def test_a_study_starts_from_a_csv(tmp_path: Path) -> None:
    write(tmp_path / "known.csv", """
        x,y,val_loss,comment
        0.1,0.5,0.04,in the space
        0.2,0.9,0.17,in the space
        0.5,0.5,0.04,x outside its range
        0.1,0.7,0.04,y not one of the choices
        ,0.5,0.04,x missing
        0.2,0.5,,no metric
    """)
    sweep = optuna_sweep(tmp_path, "known.csv", trials=3)
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert (f"seeded 2 finished trial(s) from {tmp_path / 'known.csv'}; 3 outside the search "
            "space skipped; 1 without a finite metric skipped") in flat(done.stderr)
    study = study_of(tmp_path / "runs" / "study")
    seeded = sorted((t for t in study.trials if SEEDED_ATTR in t.user_attrs),
                    key=lambda t: t.params["x"])
    assert [(t.params, t.value) for t in seeded] == [({"x": 0.1, "y": 0.5}, 0.04),
                                                      ({"x": 0.2, "y": 0.9}, 0.17)]
    assert len(study.trials) == 2 + 3
    assert len(trainings(tmp_path / "trained.log")) == 3


def test_a_csv_without_the_metric_column_is_one_located_line(tmp_path: Path,
                                                           cli: Any) -> None:
    csv = write(tmp_path / "known.csv", "x,y,loss\n0.1,0.5,0.04\n")
    sweep = optuna_sweep(tmp_path, "known.csv")
    result: CliResult = cli("validate", str(sweep))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"{sweep}:6: search.seed_from:")
    assert str(csv) in lines[0] and "'val_loss'" in lines[0]


@pytest.mark.parametrize(("seed_from", "method", "expected"), [
    ("nowhere", "optuna", "does not exist: name a run directory or a .csv file (a study "
                          "already seeded from it can drop search.seed_from)"),
    ("empty", "optuna", "not a candle run directory"),
    ("notes.txt", "optuna", "neither a run directory nor a .csv file"),
    ("known.csv", "grid", "a CSV holds no job results to reuse"),
])
def test_seed_from_mistakes_are_one_located_line(tmp_path: Path, cli: Any, seed_from: str,
                                                 method: str, expected: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x\n")
    write(tmp_path / "known.csv", "x,y,val_loss\n0.1,0.5,0.04\n")
    sweep = write(tmp_path / "sweep.yaml", f"""
        name: s
        benchmark: "quad:train"
        search:
          method: {method}
          seed_from: {seed_from}
          space: {{x: [0.1, 0.2]}}
        store: runs
    """)
    (tmp_path / "quad.py").write_text(MODEL.read_text())
    result: CliResult = cli("validate", str(sweep))
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{sweep}:5: search.seed_from:"), result.err
    assert expected in lines[0]


def test_what_lies_outside_the_space() -> None:
    dims: dict[str, Dimension] = {"x": Uniform(0.0, 1.0), "n": IntRange(2, 10, step=2),
            "act": Choice(("relu", "tanh")), "dense": Choice(([8, 4], [16]))}
    point = {"x": 0.5, "n": 4, "act": "relu", "dense": [16], "epochs": 3}
    assert encode(dims, point) == {"x": 0.5, "n": 4, "act": "relu", "dense": "[16]"}
    assert encode(dims, {**point, "n": 5}) is None  # off the step
    assert encode(dims, {**point, "n": 12}) is None
    assert encode(dims, {**point, "x": 1.5}) is None
    assert encode(dims, {**point, "act": "elu"}) is None
    assert encode(dims, {**point, "dense": [8]}) is None
    assert encode(dims, {k: v for k, v in point.items() if k != "x"}) is None
    assert encode({"flag": Choice((1, 2))}, {"flag": True}) is None  # True is not 1


def expected(params: dict[str, Any], *, defaults: dict[str, Any] | None = None,
             folds: int | None = None, **settings: Any) -> Expected:
    from candle.plan.jobs import JobSettings

    defaults = defaults or {}
    return Expected(defaults=defaults, params={**defaults, **params},
                    searched=frozenset({"x"}), settings=JobSettings(**settings).record(),
                    folds=folds)


def source_job(params: dict[str, Any], *, folds: int | None = None, **settings: Any) -> Any:
    from candle.plan.jobs import JobSettings, JobTemplate

    template = JobTemplate("m:f", params, folds=folds, replicas=1, base_seed=0,
                           settings=JobSettings(**settings).record())
    return template.jobs(0, {"x": 0.1})[0]


def test_a_changed_fixed_param_is_another_setting() -> None:
    job = source_job({"epochs": 2})
    assert expected({"epochs": 2}).difference(job) is None
    assert expected({"epochs": 400}).difference(job) == "epochs 2 vs 400"
    assert expected({}).difference(job) == "epochs 2 vs unset"  # the function's own default
    assert expected({"epochs": 2, "lr": 0.1}).difference(job) == "lr unset vs 0.1"
    assert expected({"epochs": 2.0}).difference(job) is None  # 2 and 2.0: the same value


def test_a_default_the_source_overrode_is_another_setting() -> None:
    # This sweep leaves epochs at the benchmark's 400; the source ran with epochs 2.
    assert (expected({}, defaults={"epochs": 400}).difference(source_job({"epochs": 2}))
            == "epochs 2 vs 400")
    # The source left it at the default (its record holds only what the sweep set).
    assert expected({}, defaults={"epochs": 400}).difference(source_job({})) is None
    assert expected({"epochs": 400}, defaults={"epochs": 400}).difference(
        source_job({})) is None


def test_other_job_settings_or_folds_are_other_settings() -> None:
    assert expected({}, folds=5, cv_seed=1, stratify=True).difference(
        source_job({}, folds=5, cv_seed=2, stratify=True)) == "cv_seed 2 vs 1"
    assert expected({}, benchmark_version=2).difference(
        source_job({}, benchmark_version=1)) == "benchmark_version 1 vs 2"
    assert expected({}, ranks=4).difference(source_job({})) == "ranks 1 vs 4"
    assert expected({}, folds=5, cv_seed=1, stratify=True).difference(
        source_job({}, folds=3, cv_seed=1, stratify=True)) == "folds 3 vs 5"
    # A job record older than a settings key reads it at its default.
    job = source_job({})
    old = type(job)(**{**job.to_record(), "settings": {}})
    assert expected({}).difference(old) is None


def test_points_computed_under_other_settings_are_skipped_and_said(tmp_path: Path) -> None:
    from candle.adaptive.seed import run_points
    from candle.plan.jobs import JobTemplate
    from candle.store.run_store import RunStore

    template = JobTemplate("m:f", {"epochs": 2}, folds=None, replicas=1, base_seed=0)
    store = RunStore(tmp_path / "prev")
    (store.root / "jobs").mkdir(parents=True)
    jobs = [job for i, x in enumerate((0.1, 0.2, 0.3)) for job in template.jobs(i, {"x": x})]
    store.append_jobs(jobs)
    for job in jobs:
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": 1.0}})
    config = OptunaConfig.of("study", SearchSpec(
        "optuna", {"x": Uniform(0.0, 1.0)}, (), 3, 0, "val_loss", "minimize"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=open_storage(tmp_path, writer=True),
                                study_name="study")
    points = run_points(store, ("val_loss",), expected({}, defaults={"epochs": 400}))
    report = seed_study(study, config, points, "prev")
    assert (report.seeded, report.other) == (0, 3) and not study.trials
    assert report.line() == ("seeded 0 finished trial(s) from prev; 0 outside the search "
                             "space skipped; 3 computed under other settings skipped "
                             "(epochs 2 vs 400)")
    assert seed_study(study, config, points, "prev").other == 3  # the record keeps it


def test_seeding_is_once_per_study_and_multi_objective(tmp_path: Path) -> None:
    space: dict[str, Dimension] = {"x": Uniform(0.0, 1.0)}
    config = OptunaConfig.of("study", SearchSpec(
        "optuna", space, (), 3, 0, "val_loss", "minimize", ("val_loss", "cost"),
        ("minimize", "minimize")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=open_storage(tmp_path, writer=True),
                                study_name="study", directions=["minimize", "minimize"])
    points = [SeedPoint({"x": 0.2}, [1.0, 2.0]), SeedPoint({"x": 2.0}, [0.0, 0.0]),
              SeedPoint({"x": 0.4}, None)]
    report = seed_study(study, config, points, "prev")
    assert (report.seeded, report.outside, report.no_metric) == (1, 1, 1)
    (trial,) = study.trials
    assert trial.values == [1.0, 2.0] and trial.state == optuna.trial.TrialState.COMPLETE
    assert used_budget(study) == 0
    again = seed_study(study, config, points, "prev")
    assert again.before and again.seeded == 1 and len(study.trials) == 1


def test_a_runs_point_is_its_mean_over_done_jobs(tmp_path: Path) -> None:
    from candle.adaptive.seed import run_points
    from candle.plan.jobs import JobTemplate
    from candle.store.run_store import RunStore

    template = JobTemplate("m:f", {"epochs": 2}, folds=2, replicas=2, base_seed=0)
    store = RunStore(tmp_path / "prev")
    (store.root / "jobs").mkdir(parents=True)
    a, b = template.jobs(0, {"x": 0.1}), template.jobs(1, {"x": 0.2})
    store.append_jobs([*a, *b])
    for i, job in enumerate(a):
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": float(i),
                                                                  "cost": 10.0 + i}})
    store.write_result(b[0].id, {"status": "done", "metrics": {"cost": 1.0}})
    store.write_result(b[1].id, {"status": "failed", "metrics": {"val_loss": 0.0}})
    points = run_points(store, ("val_loss", "cost"))
    assert points == [SeedPoint({"epochs": 2, "x": 0.1}, [1.5, 11.5]),
                      SeedPoint({"epochs": 2, "x": 0.2}, None)]  # a done job lacks val_loss


@pytest.mark.slow
def test_a_multi_objective_study_is_seeded_with_every_metric(tmp_path: Path) -> None:
    grid_run(tmp_path)
    sweep = optuna_sweep(tmp_path, "runs/first", trials=2, metric="[val_loss, cost]",
                         direction="[minimize, minimize]")
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    study = study_of(tmp_path / "runs" / "study")
    seeded = [t for t in study.trials if SEEDED_ATTR in t.user_attrs]
    assert len(seeded) == 4 and len(study.trials) == 6
    for trial in seeded:
        x, y = trial.params["x"], trial.params["y"]
        assert trial.values == pytest.approx([loss(x, y), x + y])


@pytest.mark.slow
def test_a_study_is_not_seeded_with_results_of_another_fixed_param(tmp_path: Path) -> None:
    grid_run(tmp_path)
    sweep = optuna_sweep(tmp_path, "runs/first", trials=1, params=", scale: 2")
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert ("seeded 0 finished trial(s)" in flat(done.stderr)
            and "6 computed under other settings skipped (scale unset vs 2)"
            in flat(done.stderr)), done.stderr
    assert not [t for t in study_of(tmp_path / "runs" / "study").trials
                if SEEDED_ATTR in t.user_attrs]


@pytest.mark.slow
def test_a_study_is_not_seeded_from_a_user_model_in_another_folder(tmp_path: Path) -> None:
    first = grid_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sweep = optuna_sweep(elsewhere, str(first), trials=1)
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert ("its user model lives in another folder: nothing seeded"
            in flat(done.stderr)), done.stderr
    assert "seeded 0" not in flat(done.stderr)
    assert len(study_of(elsewhere / "runs" / "study").trials) == 1  # the new trial only


def test_a_malformed_csv_body_is_one_located_line(tmp_path: Path) -> None:
    known = write(tmp_path / "known.csv", "x,y,val_loss\n0.1,0.5,0.04\n")
    with known.open("a") as handle:  # a field past the csv module's limit, on line 3
        handle.write(f"0.2,0.5,{'9' * 200_000}\n")
    sweep = optuna_sweep(tmp_path, "known.csv", trials=1)
    done = run_candle("run", str(sweep))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"{sweep}:6: search.seed_from: cannot read {known}: line 3:"), \
        lines[0]
