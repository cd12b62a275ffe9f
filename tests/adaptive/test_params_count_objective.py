"""The README's multi-objective example, `metric: [val_loss, params_count]`, as written: a
built-in benchmark reports its parameter count as a metric, so the Pareto front trades
accuracy against model size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_candle, write

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_val_loss_and_params_count_pareto_front(tmp_path: Path) -> None:
    sweep = write(tmp_path / "pareto.yaml", f"""
        name: pareto
        benchmark: nt3
        params: {{epochs: 1, samples: 120, features: 200, conv: [4, 5, 1], pool: [2]}}
        search:
          method: optuna
          sampler: {{name: random}}
          trials: 3
          seed: 2
          space: {{dense: [[8], [32, 8], [64, 16]]}}
          metric: [val_loss, params_count]
          direction: [minimize, minimize]
        resources: {{max_concurrent: 1}}
        store: {tmp_path / "runs"}
    """)
    assert run_candle("validate", str(sweep)).returncode == 0
    done = run_candle("run", str(sweep), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = run_candle("summary", str(tmp_path / "runs" / "pareto"), "--format", "json")
    assert summary.returncode == 0, summary.stderr
    study = json.loads(summary.stdout)
    counts = {row["values"][1] for row in study["rows"] if row["state"] == "complete"}
    assert len(study["rows"]) == 3 and all(c > 1000 for c in counts)
    assert study["best"], "a Pareto front of at least one trial"
