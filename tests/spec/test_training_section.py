"""A sweep's ``training:`` section: early stopping, ReduceLROnPlateau and warm-up become
benchmark params (and so part of every job id); bad input is one located line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from candle.plan.jobs import iter_jobs
from candle.spec import load_sweep
from tests.conftest import ROOT, write

SWEEP = """
name: controls
benchmark: {benchmark}
params:
  epochs: 20
training:
  early_stopping:
    patience: {patience}
    min_delta: 0.001
    monitor: {monitor}
  reduce_lr: {{patience: 3, factor: 0.5, min_delta: 0.01}}
  warmup_epochs: 2
"""


def sweep_file(tmp_path: Path, benchmark: str = "nt3", patience: int = 4,
               monitor: str = "val_accuracy") -> Path:
    return write(tmp_path / f"{benchmark}-{patience}.yaml",
                 SWEEP.format(benchmark=benchmark, patience=patience, monitor=monitor))


def test_training_section_becomes_benchmark_params(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path))
    assert sweep.params == {
        "epochs": 20, "early_stopping_patience": 4, "early_stopping_min_delta": 0.001,
        "early_stopping_monitor": "val_accuracy", "reduce_lr_patience": 3,
        "reduce_lr_factor": 0.5, "reduce_lr_min_delta": 0.01, "warmup_epochs": 2}
    p1b3 = load_sweep(sweep_file(tmp_path, "p1b3", monitor="val_r2"))
    assert p1b3.params["early_stopping_monitor"] == "val_r2"


def test_short_forms(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "s.yaml", """
        name: s
        benchmark: tc1
        training: {early_stopping: 5, reduce_lr: false}
    """))
    assert sweep.params == {"early_stopping_patience": 5, "reduce_lr_patience": 0}


def test_job_ids_change_with_patience(tmp_path: Path) -> None:
    (four,) = iter_jobs(load_sweep(sweep_file(tmp_path, patience=4)))
    (again,) = iter_jobs(load_sweep(sweep_file(tmp_path / "again", patience=4)))
    (five,) = iter_jobs(load_sweep(sweep_file(tmp_path, patience=5)))
    assert four.id == again.id
    assert four.id != five.id
    assert five.params["early_stopping_patience"] == 5


BAD = [
    # (the training section, its line, key, words in the message)
    ("training:\n  early_stop: {patience: 3}\n", 4, "training.early_stop",
     "unknown key; valid keys: early_stopping, reduce_lr, warmup_epochs"),
    ("training:\n  early_stopping: {patience: 3, delta: 0.1}\n", 4,
     "training.early_stopping.delta", "unknown key; valid keys: patience, min_delta, monitor"),
    ("training:\n  early_stopping:\n    patience: -2\n", 5,
     "training.early_stopping.patience", "must be >= 0"),
    ("training:\n  reduce_lr:\n    patience: 2\n    factor: 1.5\n", 6,
     "training.reduce_lr.factor", "between 0 and 1"),
    ("training:\n  early_stopping:\n    patience: 2\n    monitor: val_acuracy\n", 6,
     "training.early_stopping.monitor", "did you mean 'val_accuracy'?"),
    ("training:\n  warmup_epochs: -1\n", 4, "training.warmup_epochs", "must be >= 0"),
    ("params:\n  early_stopping_patience: 3\ntraining:\n  early_stopping: {patience: 2}\n", 4,
     "params.early_stopping_patience", "also set by training.early_stopping; keep one"),
]


@pytest.mark.parametrize(("section", "line", "key", "words"), BAD)
def test_bad_training_section_is_one_located_line(cli, tmp_path: Path, section: str,  # type: ignore[no-untyped-def]
                                                 line: int, key: str, words: str) -> None:
    sweep = tmp_path / "bad.yaml"
    sweep.write_text("name: bad\nbenchmark: nt3\n" + section)
    result = cli("validate", str(sweep))
    assert result.code == 2, result
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], result.err
    assert lines[0].startswith(f"{sweep}:{line}: {key}: "), lines[0]
    assert words in lines[0], lines[0]


def test_example_workflow_validates(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("validate", str(ROOT / "workflows" / "nt3_controls.yaml"))
    assert result.code == 0, result.err
    sweep = load_sweep(ROOT / "workflows" / "nt3_controls.yaml")
    assert sweep.params["early_stopping_patience"] > 0
    assert sweep.params["reduce_lr_patience"] > 0
