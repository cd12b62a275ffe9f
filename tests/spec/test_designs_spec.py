"""Issue 21's sweep keys: cv groups, holdout, repeats, cross-study studies, and the
leave-out tree's stages. Valid ones plan the jobs they say; bad ones are one line naming
file, line and key, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from candle.plan.jobs import JobSettings, iter_jobs, job_design
from candle.spec import load_sweep
from candle.spec.model import StagesSpec, repeat_seed
from tests.conftest import write

BAD = [
    # (text, line, key, words)
    ("name: x\nbenchmark: p1b3\ncv:\n  groups: tissue\n", 4, "cv.groups",
     "expected one of cell, drug, cell_drug, study"),
    ("name: x\nbenchmark: nt3\ncv:\n  folds: 3\n  groups: cell\n", 5, "cv.groups",
     "nt3 does not support cv/groups (p1b3 does)"),
    ("name: x\nbenchmark: tc1\ncv:\n  holdout: 0.2\n", 4, "cv.holdout",
     "tc1 does not support cv/holdout (p1b3 does)"),
    ("name: x\nbenchmark: p1b3\ncv:\n  holdout: 0.95\n", 4, "cv.holdout",
     "a fraction of the groups in (0, 0.9]"),
    ("name: x\nbenchmark: p1b3\ncv:\n  train_studies: [CCLE]\n", 4, "cv.train_studies",
     "needs test_studies as well"),
    ("name: x\nbenchmark: p1b3\ncv:\n  train_studies: [CCLE, GDSC]\n"
     "  test_studies: [GDSC]\n", 5, "cv.test_studies", "GDSC is in train_studies too"),
    ("name: x\nbenchmark: p1b3\ncv:\n  train_studies: [CCLE, CCLE]\n  test_studies: [GDSC]\n",
     4, "cv.train_studies[1]", "non-empty and distinct"),
    ("name: x\nbenchmark: p1b3\ncv:\n  train_studies: [CCLE]\n  test_studies: [GDSC]\n"
     "  repeats: 3\n", 6, "cv.repeats", "it needs cv.folds"),
    ("name: x\nbenchmark: p1b3\ncv: {folds: 3}\nstages: {depth: 2}\n", 4, "stages",
     "stages and cv.folds both split the data"),
    ("name: x\nbenchmark: p1b3\nstages:\n  depth: 2\n  epochs: cubic\n", 5, "stages.epochs",
     "expected one of flat, linear, log, sqrt"),
    ("name: x\nbenchmark: p1b3\nstages:\n  children: 1\n", 4, "stages.children",
     "must be >= 2"),
    ("name: x\nbenchmark: p1b3\nparams: {studies: [CCLE, GDSC]}\ncv:\n"
     "  train_studies: [CCLE]\n  test_studies: [GDSC, CTRP]\n", 6, "cv.test_studies[1]",
     "'CTRP' is not one of the synthetic data's studies (CCLE, GDSC)"),
    ("name: x\nbenchmark: p1b3\ncv:\n  folds: 2\n  groups: study\n", 5, "cv.groups",
     "grouping by study needs the synthetic data's studies"),
    ("name: x\nbenchmark: nt3\nstages: {depth: 2}\n", 3, "stages",
     "nt3 does not support stages (p1b3 does)"),
    ("name: x\nbenchmark: p1b3\nsearch:\n  method: optuna\n  space: {dropout: [0.1, 0.2]}\n"
     "stages: {depth: 2}\n", 6, "stages", "search method optuna makes its jobs as results"),
    ("name: x\nbenchmark: p1b3\nstages: {depth: 14, children: 3}\n", 3, "stages.depth",
     "more than one sweep plans"),
    ("name: x\nbenchmark: p1b3\nstages: {depth: 200000}\n", 3, "stages.depth",
     "must be <= 20"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), BAD)
def test_a_bad_design_is_one_line(cli, tmp_path: Path, text, line, key, words):  # type: ignore[no-untyped-def]
    sweep = write(tmp_path / "sweep.yaml", text)
    result = cli("validate", str(sweep))
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    assert lines[0].startswith(f"{sweep}:{line}: {key}: "), lines[0]
    assert words in lines[0], lines[0]


def test_repeats_draw_other_folds_and_keep_repeat_zero_as_plain_cv(tmp_path: Path) -> None:
    plain = load_sweep(write(tmp_path / "a.yaml", "name: a\nbenchmark: nt3\ncv: {folds: 3}\n"))
    repeated = load_sweep(write(tmp_path / "b.yaml",
                                "name: a\nbenchmark: nt3\ncv: {folds: 3, repeats: 2}\n"))
    first, both = list(iter_jobs(plain)), list(iter_jobs(repeated))
    assert len(both) == 6 and [j.repeat for j in both] == [0, 0, 0, 1, 1, 1]
    # repeat 0 computes what plain CV does: the same ids, results reused
    assert [j.id for j in both[:3]] == [j.id for j in first]
    assert len({j.id for j in both}) == 6
    assert repeat_seed(0, 0) == 0 and repeat_seed(0, 1) != 0


def test_designs_are_in_the_ids_only_where_set(tmp_path: Path) -> None:
    plain = load_sweep(write(tmp_path / "a.yaml", "name: a\nbenchmark: p1b3\ncv: {folds: 3}\n"))
    assert set(JobSettings.of(plain).record()) == {"cv_seed", "stratify", "uq", "ranks",
                                                   "benchmark_version"}
    job = next(iter_jobs(plain))
    assert job_design(job.settings, job) is None  # the benchmark splits as it always did
    grouped = load_sweep(write(tmp_path / "b.yaml", "name: a\nbenchmark: p1b3\n"
                               "cv: {folds: 3, groups: drug, holdout: 0.2, seed: 4}\n"))
    other = next(iter_jobs(grouped))
    assert other.id != job.id
    assert job_design(other.settings, other) == {
        "groups": "drug", "holdout": 0.2, "seed": 4, "train_studies": [], "test_studies": [],
        "node": None, "children": 0, "split": None}


def test_cross_study_needs_no_folds(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "a.yaml", "name: a\nbenchmark: p1b3\n"
                             "params: {studies: [CCLE, GDSC, CTRP]}\ncv:\n"
                             "  train_studies: [CCLE]\n  test_studies: [GDSC, CTRP]\n"))
    jobs = list(iter_jobs(sweep))
    assert len(jobs) == 1 and jobs[0].fold is None
    design = job_design(jobs[0].settings, jobs[0])
    assert design is not None and design["test_studies"] == ["GDSC", "CTRP"]


@pytest.mark.parametrize(("schedule", "expected"), [
    ("flat", [12, 12, 12, 12]), ("linear", [12, 9, 6, 3]), ("log", [12, 8, 6, 6]),
    ("sqrt", [12, 9, 7, 6])])
def test_stage_epoch_schedules(schedule: str, expected: list[int]) -> None:
    spec = StagesSpec(depth=4, children=2, split="cell", epochs=schedule)
    assert [spec.stage_epochs(12, s) for s in (1, 2, 3, 4)] == expected
    assert StagesSpec(depth=9, children=2, split="cell", epochs="linear").stage_epochs(1, 9) == 1


def test_a_tree_sets_restore_best_weights_unless_told(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "a.yaml", "name: a\nbenchmark: p1b3\n"
                             "stages: {depth: 2, children: 3, split: cell_drug}\n"))
    jobs = list(iter_jobs(sweep))
    assert len(jobs) == 3 + 9
    assert all(j.params.get("restore_best_weights") is True for j in jobs)
    assert all(j.params["epochs"] == 1 for j in jobs)  # p1b3's default, flat


def test_training_restore_best_sets_the_param(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "a.yaml", "name: a\nbenchmark: nt3\ntraining:\n"
                             "  early_stopping: {patience: 3, restore_best: true}\n"))
    assert sweep.params["restore_best_weights"] is True
    assert sweep.params["early_stopping_patience"] == 3


def test_tree_ids_are_unique_across_points_whose_stage_epochs_coincide(
        tmp_path: Path) -> None:
    """epochs 7 and 8 both give stage 2 four epochs (linear): the baselines must still be
    two jobs each, not one job planned twice (two runs in one job folder)."""
    sweep = load_sweep(write(tmp_path / "a.yaml", "name: a\nbenchmark: p1b3\nsearch:\n"
                             "  method: grid\n  space: {epochs: [7, 8]}\n"
                             "stages: {depth: 2, children: 2, epochs: linear, "
                             "baseline: true}\n"))
    jobs = list(iter_jobs(sweep))
    assert len(jobs) == 2 * (2 + 4 + 4) and len({j.id for j in jobs}) == len(jobs)


def test_a_list_point_given_twice_is_refused(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sweep = write(tmp_path / "a.yaml", "name: a\nbenchmark: nt3\nsearch:\n  method: list\n"
                  "  points:\n    - {dropout: 0.1}\n    - {dropout: 0.2}\n    - {dropout: 0.1}\n")
    result = cli("validate", str(sweep))
    assert result.code == 2
    assert result.err.strip() == (f"{sweep}:8: search.points[2]: the same point as points[0]; "
                                  "list each point once")
