"""One supervisor builder, locally and inside an allocation: the run's settings come from
its manifest, and every job gets the same environment (the MPI root allowance included)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from candle.launch import LocalLauncher
from candle.spec import load_sweep
from candle.store import RunStore
from candle.supervisor.run import JOB_ENV, build_supervisor, mpi_env, run_meta
from candle.supervisor.slots import Node, SlotPool
from tests.conftest import write

SWEEP = """name: built
benchmark: nt3
search: {method: list, points: [{epochs: 1}], metric: val_loss}
resources: {ranks_per_job: 2, max_concurrent: 3, signal_lead: 30}
retries: 4
"""


def test_the_builder_takes_the_run_from_its_manifest_and_the_slots_from_the_caller(
        tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "sweep.yaml", SWEEP))
    manifest = replace(run_meta(sweep), fail_fast=True)
    store = RunStore(tmp_path / "run")
    pool = SlotPool([Node("n1", 4)])
    built = build_supervisor(store, manifest, LocalLauncher(), pool, threads=2,
                             deadline=1e10, began=5.0, stop_grace=4.0)
    assert (built.ranks, built.max_concurrent, built.retries) == (2, 3, 4)
    assert (built.signal_lead, built.fail_fast, built.stop_grace) == (30, True, 4.0)
    assert built.pool is pool and built.deadline == 1e10 and built.threads == 2
    assert {**JOB_ENV, **mpi_env()}.items() <= built.env.items()
    task = build_supervisor(store, manifest, LocalLauncher(), pool, threads=1,
                            deadline=None, array_task=True)
    assert (task.retries, task.max_concurrent) == (0, 0)  # the next `candle run` retries
