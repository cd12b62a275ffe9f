"""A user model that does not report the sweep's metric: the first such result stops the
sweep with one located line (exit 2) instead of every job training to its end and failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write

pytestmark = pytest.mark.slow


def test_first_result_without_the_metric_stops_the_sweep(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path / "typo_model.py", """
        def f(params):
            return {"loss": 1.0, "val_loss": float(params["x"])}
    """)
    sweep = write(tmp_path / "sweep.yaml", """
        name: typo
        benchmark: "typo_model:f"
        search:
          method: grid
          space: {x: [1, 2, 3, 4, 5]}
          metric: val_los
        resources: {max_concurrent: 1}
        retries: 2
    """)
    assert cli("validate", str(sweep)).code == 0  # a user model's metrics are its own
    result = cli("run", str(sweep))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert lines[-1].startswith(f"{sweep.resolve()}:6: search.metric: typo_model:f did not "
                                "report 'val_los'; did you mean 'val_loss'? (job ")
    assert "reported: loss, val_loss" in lines[-1]
    assert "Traceback" not in result.err
    started = list((tmp_path / "runs" / "typo" / "jobs").glob("*/params.json"))
    assert len(started) == 1, "nothing else started, and the failed job was not retried"
    assert not (started[0].parent / "attempts.jsonl").exists()
