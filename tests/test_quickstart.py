"""The README's quickstart, end to end: 8 real NT3 trainings, ranked with mean ± std."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_candle

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_nt3_grid_small_runs_and_ranks_four_points(tmp_path: Path) -> None:
    sweep = tmp_path / "nt3_grid_small.yaml"
    shutil.copy(ROOT / "workflows" / "nt3_grid_small.yaml", sweep)
    first = run_candle("run", str(sweep))
    assert first.returncode == 0, first.stderr
    assert "8 done, 0 failed, 0 already done" in first.stdout
    run_dir = tmp_path / "runs" / "nt3-grid-small"
    rows = json.loads(run_candle("summary", str(run_dir), "--format", "json").stdout)
    assert len(rows) == 4
    assert all(r["n"] == 2 and r["std"] is not None for r in rows)
    means = [r["mean"] for r in rows]
    assert means == sorted(means) and rows[0]["best"]
    assert means[0] < 0.69  # the best point learned something (chance is ln 2 = 0.693)
    again = run_candle("run", str(sweep))
    assert "0 done, 0 failed, 8 already done" in again.stdout
    result = json.loads(next(run_dir.glob("jobs/*/result.json")).read_text())
    assert set(result) >= {"status", "metrics", "history", "duration_s", "attempt", "host"}
    assert len(result["history"]["val_loss"]) == 8


def test_train_help_lists_benchmark_parameters(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("train", "nt3", "--help")
    assert result.code == 0
    for name in ("learning_rate", "conv", "pool", "dense", "dropout", "features", "rng_seed"):
        assert name in result.out
    assert "[128,20,1,128,10,1]" in result.out


def test_set_of_unknown_parameter_is_a_user_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("train", "nt3", "--set", "lernrate=0.1")
    assert result.code == 2
    assert "has no parameter 'lernrate'" in result.err
