"""The shipped NT3 Optuna sweep, for real: TensorFlow training of NT3 on synthetic data,
each trial a 2-rank Horovod job under mpirun, the median pruner on."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from candle.adaptive.journal import open_storage
from tests.conftest import ROOT, run_candle

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_nt3_optuna_sweep_with_two_rank_horovod_trials(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "workflows" / "nt3_optuna.yaml").read_text())
    doc["store"] = str(tmp_path / "runs")
    doc["params"].update(epochs=4, samples=400)
    doc["search"].update(trials=5, pruner={"name": "median", "n_startup_trials": 2,
                                           "n_warmup_steps": 1})
    doc["search"]["sampler"]["n_startup_trials"] = 3
    doc["resources"].update(ranks_per_job=2, max_concurrent=1)
    sweep = tmp_path / "nt3.yaml"
    sweep.write_text(yaml.safe_dump(doc))
    done = run_candle("run", str(sweep), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "runs" / "nt3-optuna"
    study = optuna.load_study(study_name="nt3-optuna",
                              storage=open_storage(run_dir, writer=False))
    states = {t.state for t in study.trials}
    assert len(study.trials) == 5
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert study.best_value < 0.69  # below chance (ln 2) on separable synthetic data
    for path in (run_dir / "jobs").glob("*/result.json"):
        result = json.loads(path.read_text())
        if result["status"] == "done":
            assert result["horovod"]["size"] == 2
            assert len({r["weights"] for r in result["horovod"]["ranks"]}) == 1
        else:  # pruned: both ranks stopped at the verdict's epoch and the job exited 0
            assert result["status"] == "pruned" and 1 <= result["pruned_at_step"] <= 4
            assert "mpirun" in (path.parent / "log.txt").read_text()
    plot = tmp_path / "history.png"
    summary = run_candle("summary", str(run_dir), "--plot", str(plot))
    assert summary.returncode == 0 and plot.stat().st_size > 10_000
    assert "5/5 trials used" in summary.stdout
