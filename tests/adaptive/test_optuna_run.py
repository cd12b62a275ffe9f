"""Optuna sweeps run end to end through `candle run`: real processes, real mpirun, the
journal on disk. Pruning stops bad trials early and all ranks of a job together; a
supervisor killed with SIGKILL resumes with the trial budget exact."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from candle.adaptive.journal import open_storage
from candle.adaptive.study import FAILED_ATTR, KEY_ATTR, used_budget
from tests.conftest import ROOT, candle_cmd, run_candle, write

pytestmark = pytest.mark.slow

sys.path.insert(0, str(ROOT / "workflows" / "user_model"))
from curve import floor  # noqa: E402  (the example model's own optimum)

CURVE = ROOT / "workflows" / "user_model" / "curve.py"


def curve_sweep(tmp_path: Path, *, trials: int, pruner: str = "none", epochs: int = 6,
                epoch_seconds: float = 0.05, concurrent: int = 2, seed: int = 1,
                sampler: str = "{name: tpe, n_startup_trials: 4}") -> Path:
    (tmp_path / "curve.py").write_text(CURVE.read_text())
    return write(tmp_path / "sweep.yaml", f"""
        name: study
        benchmark: "curve:train"
        params: {{epochs: {epochs}, epoch_seconds: {epoch_seconds}}}
        search:
          method: optuna
          sampler: {sampler}
          pruner: {pruner}
          trials: {trials}
          seed: {seed}
          space:
            lr: {{loguniform: [0.0001, 1.0]}}
            width: {{int: [8, 512], log: true}}
        resources: {{scheduler: local, max_concurrent: {concurrent}}}
        store: runs
    """)


def study_of(run_dir: Path) -> Any:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="study", storage=open_storage(run_dir, writer=False))


def results(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text())
            for p in (run_dir / "jobs").glob("*/result.json")}


def test_pruning_stops_bad_trials_early(tmp_path: Path) -> None:
    # Random sampling, so that half the trials are worse than the median to prune.
    sweep = curve_sweep(tmp_path, trials=16, epochs=6, sampler="random",
                        pruner="{name: median, n_startup_trials: 3, n_warmup_steps: 1}")
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "study"
    study = study_of(run_dir)
    states = [t.state for t in study.trials]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 16 and len(pruned) + len(complete) == 16, states
    assert len(pruned) >= 3
    # Pruned trials stopped before the last epoch, and were the worse ones.
    assert all(max(t.intermediate_values) < 6 for t in pruned)
    assert all(max(t.intermediate_values) == 6 for t in complete)

    def mean_floor(trials: list[Any]) -> float:
        return sum(floor(t.params["lr"], t.params["width"]) for t in trials) / len(trials)

    assert mean_floor(pruned) > mean_floor(complete)
    # In the run directory: PRUNED jobs, not failed ones, stopped at their verdict's step.
    by_status = [r["status"] for r in results(run_dir).values()]
    assert by_status.count("pruned") == len(pruned) and "failed" not in by_status
    for result in results(run_dir).values():
        if result["status"] == "pruned":
            assert result["pruned_at_step"] == len(result["history"]["val_loss"]) < 6
    status = json.loads(run_candle("status", str(run_dir), "--format", "json").stdout)
    assert status["counts"]["pruned"] == len(pruned) and status["counts"]["failed"] == 0
    summary = json.loads(run_candle("summary", str(run_dir), "--format", "json").stdout)
    assert summary["used"] == 16 and summary["best"] == [study.best_trial.number]
    assert set(summary["importances"]["val_loss"]) == {"lr", "width"}


def test_trials_are_asked_as_slots_free_never_in_batches(tmp_path: Path) -> None:
    """Durations differ per trial; with 2 slots, a new trial starts when either ends."""
    sweep = curve_sweep(tmp_path, trials=10, epochs=4, epoch_seconds=0.15)
    assert run_candle("run", str(sweep)).returncode == 0
    trials = sorted(study_of(tmp_path / "runs" / "study").trials, key=lambda t: t.number)
    spans = [(t.datetime_start, t.datetime_complete) for t in trials]
    for start, _ in spans:
        in_flight = sum(1 for s, e in spans if s <= start < e)
        assert in_flight <= 2
    # Asynchronous: some trial starts while the trial asked just before it still runs.
    overlapping = sum(1 for (s0, e0), (s1, _) in itertools.pairwise(spans)
                      if s0 < s1 < e0)
    assert overlapping >= 3


def test_multi_rank_pruning_stops_every_rank_at_the_same_epoch(tmp_path: Path) -> None:
    (tmp_path / "lockstep.py").write_text(
        (ROOT / "tests" / "adaptive" / "models" / "lockstep.py").read_text())
    sweep = write(tmp_path / "sweep.yaml", """
        name: study
        benchmark: "lockstep:train"
        params: {epochs: 8, epoch_seconds: 0.1}
        search:
          method: optuna
          sampler: {name: tpe, n_startup_trials: 2}
          pruner: {name: percentile, percentile: 40.0, n_startup_trials: 1, n_warmup_steps: 1}
          trials: 5
          seed: 3
          space:
            floor: {uniform: [0.0, 1.0]}
        resources: {scheduler: local, ranks_per_job: 2, max_concurrent: 1, oversubscribe: true}
        store: runs
    """)
    done = run_candle("run", str(sweep), timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    run_dir = tmp_path / "runs" / "study"
    pruned = 0
    for job_id, result in results(run_dir).items():
        ranks = [json.loads((run_dir / "jobs" / job_id / f"rank-{r}.json").read_text())
                 for r in (0, 1)]
        assert [r["size"] for r in ranks] == [2, 2]
        if result["status"] == "pruned":
            pruned += 1
            step = result["pruned_at_step"]
            assert step < 8
            assert [r.get("pruned_at") for r in ranks] == [step, step]  # both ranks stopped
            assert [r.get("last_epoch", 0) for r in ranks] == [step - 1, step - 1]
        else:
            assert result["status"] == "done"
            assert [r["last_epoch"] for r in ranks] == [8, 8]
    assert pruned >= 1
    study = study_of(run_dir)
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == pruned


def test_sigkilled_supervisor_resumes_with_the_budget_exact(tmp_path: Path) -> None:
    sweep = curve_sweep(tmp_path, trials=10, epochs=3, epoch_seconds=0.3)
    run_dir = tmp_path / "runs" / "study"
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        journal = run_dir / "optuna" / "journal.log"
        if journal.exists():
            study = study_of(run_dir)
            # Trials in flight too: right after a tell, the next ask may not be made yet.
            in_flight = any(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
            if used_budget(study) >= 3 and in_flight:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    study = study_of(run_dir)
    running = [t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert running, "kill it while trials run"
    used_before = used_budget(study)
    time.sleep(1.0)  # orphaned jobs would write in this time (they die with the supervisor)

    finished = run_candle("run", str(sweep))
    assert finished.returncode == 0, finished.stderr
    study = study_of(run_dir)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert used_budget(study) == len(complete) == 10  # exact: none lost, none twice
    assert used_before < 10
    assert sorted(t.number for t in failed) == running  # the interrupted ones, uncounted
    assert all(FAILED_ATTR not in t.user_attrs for t in failed)
    retried = {t.user_attrs[KEY_ATTR] for t in complete}
    assert all(number in retried for number in running)  # each re-asked
    for number in running:
        (retry,) = [t for t in complete if t.user_attrs[KEY_ATTR] == number]
        # Killed between ask() and its last suggest, a trial holds only some params (its
        # job never started): the retry keeps those and samples the rest.
        assert retry.params.items() >= study.trials[number].params.items()
    plan = [json.loads(line)["id"] for line in (run_dir / "plan.jsonl").read_text().splitlines()]
    assert len(plan) == len(set(plan)) == 10
    assert all(r["status"] == "done" for r in results(run_dir).values())
    summary = json.loads(run_candle("summary", str(run_dir), "--format", "json").stdout)
    assert summary["used"] == 10 and summary["trials"] == 10
