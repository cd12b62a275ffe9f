"""A result belongs to the settings it is filed under: every setting that changes what a
job computes changes its id, and a re-run under changed settings never reuses a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candle.plan import iter_jobs
from candle.spec import load_sweep
from tests.conftest import write

BASE = {
    "cv": "cv: {folds: 2, seed: 1, stratify: true}",
    "uq": "uq: {method: mc_dropout, replicas: 2, samples: 4}",
    "resources": "resources: {ranks_per_job: 1, oversubscribe: true}",
    "params": "params: {epochs: 1, rng_seed: 5}",
}

# (section, its changed text): each changes what every job computes
CHANGES = {
    "cv.seed": ("cv", "cv: {folds: 2, seed: 2, stratify: true}"),
    "cv.stratify": ("cv", "cv: {folds: 2, seed: 1, stratify: false}"),
    "cv.folds": ("cv", "cv: {folds: 3, seed: 1, stratify: true}"),
    "uq.samples": ("uq", "uq: {method: mc_dropout, replicas: 2, samples: 5}"),
    "uq.method": ("uq", "uq: {method: bootstrap, replicas: 2}"),
    "ranks_per_job": ("resources", "resources: {ranks_per_job: 2, oversubscribe: true}"),
    "rng_seed": ("params", "params: {epochs: 1, rng_seed: 6}"),
}


def _sweep_file(path: Path, **sections: str) -> Path:
    body = {**BASE, **sections}
    return write(path, "name: ident\nbenchmark: nt3\n" + "\n".join(body.values()) + "\n")


def _ids(path: Path) -> set[str]:
    return {job.id for job in iter_jobs(load_sweep(path))}


@pytest.mark.parametrize("setting", sorted(CHANGES))
def test_each_setting_that_changes_a_computation_changes_every_id(tmp_path: Path,
                                                                  setting: str) -> None:
    section, text = CHANGES[setting]
    before = _ids(_sweep_file(tmp_path / "a.yaml"))
    after = _ids(_sweep_file(tmp_path / "b.yaml", **{section: text}))
    assert before and after
    assert not before & after, f"{setting} changed, yet some job ids stayed"


def test_settings_that_do_not_change_a_job_keep_its_id(tmp_path: Path) -> None:
    """More replicas add jobs; the existing replicas stay the same jobs."""
    few = _ids(_sweep_file(tmp_path / "a.yaml"))
    more = _ids(_sweep_file(tmp_path / "b.yaml",
                            uq="uq: {method: mc_dropout, replicas: 3, samples: 4}"))
    assert few < more


def test_user_model_seed_and_noise_options_are_part_of_the_id(tmp_path: Path) -> None:
    def user(name: str, seed: int, noise: str) -> set[str]:
        return _ids(write(tmp_path / name, f"""
            name: u
            benchmark: "model:f"
            search: {{method: list, points: [{{x: 1}}], seed: {seed}}}
            uq: {{method: noise, noise: {noise}, noise_levels: [0.1], replicas: 1}}
        """))

    base = user("a.yaml", 1, "features")
    assert not base & user("b.yaml", 2, "features")  # the seed the model receives
    assert not base & user("c.yaml", 1, "labels")


MODEL = """
    import json, os

    def f(params):
        # Records what it was given, so the test sees which settings a result came from.
        with open(os.path.join(params["job_dir"], "given.json"), "w") as handle:
            json.dump({"cv_seed": params["cv_seed"], "seed": params["seed"]}, handle)
        return {"val_loss": float(params["x"] + params["fold"])}
"""


def _user_sweep(path: Path, cv_seed: int, method: str = "grid") -> Path:
    search = ("search: {method: grid, space: {x: [1, 2]}}" if method == "grid" else
              "search: {method: optuna, space: {x: {uniform: [0, 1]}}, trials: 2, seed: 3}")
    return write(path, f"""
        name: resweep
        benchmark: "ident_model:f"
        {search}
        cv:
          folds: 2
          seed: {cv_seed}
        resources: {{max_concurrent: 2}}
    """)


@pytest.mark.slow
def test_rerun_with_a_new_cv_seed_computes_new_results(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path / "ident_model.py", MODEL)
    sweep = _user_sweep(tmp_path / "sweep.yaml", cv_seed=1)
    first = cli("run", str(sweep))
    assert first.code == 0, first.err
    assert "4 done" in first.out and "0 already done" in first.out

    _user_sweep(sweep, cv_seed=2)
    second = cli("run", str(sweep))
    assert second.code == 0, second.err
    assert "4 done" in second.out and "0 already done" in second.out  # not "4 already done"
    assert "cv.seed changed (1 -> 2)" in second.err
    run = tmp_path / "runs" / "resweep"
    plan = [json.loads(line) for line in (run / "plan.jsonl").read_text().splitlines()]
    given = [json.loads((run / "jobs" / job["id"] / "given.json").read_text()) for job in plan]
    assert {g["cv_seed"] for g in given} == {2}

    third = cli("run", str(sweep))  # unchanged settings: everything is reused
    assert "4 already done" in third.out and "note" not in third.err.lower()


@pytest.mark.slow
def test_an_optuna_study_refuses_changed_settings_with_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path / "ident_model.py", MODEL)
    sweep = _user_sweep(tmp_path / "sweep.yaml", cv_seed=1, method="optuna")
    assert cli("run", str(sweep)).code == 0
    _user_sweep(sweep, cv_seed=2, method="optuna")
    refused = cli("run", str(sweep))
    assert refused.code == 2
    lines = refused.err.strip().splitlines()
    assert len(lines) == 1, refused.err
    assert lines[0].startswith(f"{sweep.resolve()}:6: cv.seed: cv.seed changed (1 -> 2)")
    assert "new name" in lines[0]
