"""A 58,320-job array sweep (an 11,664-point grid x 5 folds, the size of the CANDLE
papers' searches) is submitted in waves that fit the queue's limit, a few sbatch calls per
wave, never one per job.

Offline: Slurm's answers come from a stand-in backend whose MaxArraySize / MaxJobCount are
Slurm's defaults (1001 / 10000), because filling the test cluster's queue with 58,320
tasks would test the test cluster. The same code path submits to the live Slurm in
tests/schedulers/test_slurm_live.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candle.schedulers._base import AllocState
from candle.schedulers.batch.submit import plan_and_submit, submissions
from candle.schedulers.slurm import backend
from candle.spec import load_sweep
from candle.store import RunStore
from candle.supervisor.run import run_meta
from tests.conftest import write

pytestmark = pytest.mark.slow

GRID = {"a": 4, "b": 9, "c": 9, "d": 4, "e": 3, "f": 3}  # 11,664 points


class FakeSlurm:
    """sbatch hands out ids; sacct says whatever the test set; the limits are Slurm's."""

    def __init__(self) -> None:
        self.sbatch_calls = 0
        self.states: dict[str, AllocState] = {}

    def submit(self, script: Path, tag: str, after: str = "", ok: bool = False) -> str:
        self.sbatch_calls += 1
        job_id = str(1000 + self.sbatch_calls)
        self.states[job_id] = AllocState.PENDING
        return job_id

    def status(self, ids: list[str]) -> dict[str, AllocState]:
        return {i: self.states[i] for i in ids if i in self.states}


def test_a_58320_job_array_sweep_goes_in_waves(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm()
    monkeypatch.setattr(backend, "submit", fake.submit)
    monkeypatch.setattr(backend, "status", fake.status)
    monkeypatch.setattr(backend, "cluster_limits", lambda: (1001, 10000))
    monkeypatch.setattr(backend, "tagged_jobs", lambda: {})
    write(tmp_path / "model.py", "def objective(params):\n    return {'val_loss': 0.0}\n")
    doc = {
        "name": "huge", "benchmark": "model:objective",
        "search": {"method": "grid", "metric": "val_loss",
                   "space": {k: list(range(n)) for k, n in GRID.items()}},
        "cv": {"folds": 5},
        "resources": {"scheduler": "slurm", "mode": "array", "walltime": "00:30:00",
                      "site": str(Path(__file__).parents[2] / "configs" / "local-slurm.yaml")},
        "store": str(tmp_path / "runs"),
    }
    path = tmp_path / "huge.yaml"
    path.write_text(json.dumps(doc))
    sweep = load_sweep(path)
    store = RunStore(sweep.run_dir)

    scripts, new, still = plan_and_submit(sweep, run_meta(sweep), dry_run=False)
    assert sum(1 for _ in store.jobs()) == 58_320
    assert fake.sbatch_calls == 5 and len(new) == 5 and not still  # 5,000 tasks: half of 10,000
    assert [r.count for r in new] == [1000] * 5
    assert "#SBATCH --array=0-999" in scripts[0].text
    first_wave = [line for r in new
                  for line in (store.root / "slurm" / str(r.chunk)).read_text().split()]
    assert len(set(first_wave)) == 5000

    # While the wave is queued, running it again submits nothing.
    _, again, still = plan_and_submit(sweep, run_meta(sweep), dry_run=False)
    assert not again and len(still) == 5 and fake.sbatch_calls == 5

    # The wave ends (its jobs done): the next wave is the next 5,000 jobs, numbered on.
    for job_id in first_wave:  # (plain writes: 5,000 fsyncs would only slow the test)
        store.job_dir(job_id).mkdir(parents=True)
        (store.job_dir(job_id) / "result.json").write_text('{"status": "done"}')
    for record in new:
        fake.states[record.job_id] = AllocState.COMPLETED
    _, second, _ = plan_and_submit(sweep, run_meta(sweep), dry_run=False)
    assert fake.sbatch_calls == 10 and second[0].chunk == "chunk-0005.txt"
    second_wave = {line for r in second
                   for line in (store.root / "slurm" / str(r.chunk)).read_text().split()}
    assert len(second_wave) == 5000 and not second_wave & set(first_wave)
    assert len(submissions(store)) == 10  # 12 waves in all: ceil(58,320 / 5,000)
