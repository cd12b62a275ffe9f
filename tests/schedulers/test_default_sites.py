"""`scheduler: slurm` or `pbs` with no `site`: the default must be safe on any cluster. It
used to be the emulated test cluster (TCP-only Open MPI, root allowed, partition debug,
2 cores per node) and, for PBS, a venv under $HOME that `set -e` died on where it did not
exist. The test cluster is used only where named (`site: local-slurm`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candle.launch._base import LaunchRequest
from candle.schedulers.batch.backend import allocation_for
from candle.spec import load_sweep
from tests.conftest import write

MODEL = "def f(params):\n    return {'val_loss': 0.0}\n"
# What the emulated cluster and the old PBS default put into every script.
TEST_CLUSTER_ONLY = ("OMPI_", "btl", "ALLOW_RUN_AS_ROOT", "--partition", "debug",
                     "candle-venv", "activate", "module load")


def _sweep(tmp_path: Path, scheduler: str, extra: str = "") -> Path:
    write(tmp_path / "m.py", MODEL)
    return write(tmp_path / "s.yaml", f"""
        name: s
        benchmark: "m:f"
        resources:
          scheduler: {scheduler}
          nodes: 2
          ranks_per_job: 3
        {extra}
    """)


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_the_default_site_renders_nothing_a_real_cluster_would_trip_on(
        tmp_path: Path, cli, scheduler: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", "--dry-run", str(_sweep(tmp_path, scheduler)))
    assert result.code == 0, result.err
    for word in TEST_CLUSTER_ONLY:
        assert word not in result.out, (word, result.out)
    # The node size is not known: each node is asked for one job's ranks, no more.
    if scheduler == "slurm":
        assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=3\n" in result.out
    else:
        assert "#PBS -l select=2:ncpus=3:mpiprocs=3\n" in result.out


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_plan_shows_what_the_default_site_asks_for(tmp_path: Path, cli,  # type: ignore[no-untyped-def]
                                                   scheduler: str) -> None:
    """Not this login node's cores: what the script asks (one job's ranks per node)."""
    result = cli("plan", str(_sweep(tmp_path, scheduler)), "--format", "json")
    assert result.code == 0, result.err
    alloc = json.loads(result.out)["allocation"]
    assert (alloc["nodes"], alloc["slots_per_node"], alloc["jobs_at_once"]) == (2, 3, 2)
    assert alloc["site"].endswith(f"generic-{scheduler}.yaml")
    table = cli("plan", str(_sweep(tmp_path, scheduler)))
    assert "cores_per_node" in table.out  # says how to pack more than one job per node


def test_the_default_slurm_site_uses_the_clusters_own_mpi_plugin(tmp_path: Path) -> None:
    """`srun --mpi=pmix` fails where Slurm has no PMIx plugin: the default passes no --mpi,
    so srun uses the cluster's MpiDefault."""
    site = load_sweep(_sweep(tmp_path, "slurm")).resources.site
    assert site is not None and site.mpi == ""
    argv = allocation_for("slurm").launcher(site).argv(
        LaunchRequest(tmp_path, "j", ranks=2, attempt=1, threads=1))
    assert not [a for a in argv if a.startswith("--mpi")], argv


def test_the_test_cluster_is_used_where_named(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = _sweep(tmp_path, "slurm", "  site: local-slurm")
    result = cli("run", "--dry-run", str(sweep))
    assert result.code == 0, result.err
    assert "#SBATCH --partition=debug" in result.out and "OMPI_MCA_btl" in result.out


@pytest.mark.parametrize(("cpus_on_node", "tasks", "cpus_per_task", "threads"), [
    ("8", "2(x2)", None, 4),  # an exclusive node: its cores shared by this node's ranks
    ("2", "2", None, 1),  # a shared node: one CPU per task
    ("8", "2", "3", 3),  # asked for explicitly
])
def test_slurm_threads_per_rank_come_from_the_allocation(
        monkeypatch: pytest.MonkeyPatch, cpus_on_node: str, tasks: str,
        cpus_per_task: str | None, threads: int) -> None:
    from candle.schedulers.slurm.allocation import threads_per_job

    monkeypatch.setenv("SLURM_CPUS_ON_NODE", cpus_on_node)
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", tasks)
    if cpus_per_task is None:
        monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    else:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", cpus_per_task)
    assert threads_per_job() == threads


@pytest.mark.slow
@pytest.mark.integration
def test_a_sweep_that_names_no_site_runs_on_a_real_slurm(live_slurm: None,
                                                         tmp_path: Path) -> None:
    """The default assumes nothing, so it runs where the test cluster's settings are not
    there: the live Slurm's default partition, its MpiDefault, one job per node (the node
    size is unknown) with the node's CPUs as threads."""
    from candle.store import RunStore
    from tests.conftest import run_candle
    from tests.schedulers.test_backend_suite import MODEL as SLEEPY
    from tests.schedulers.test_backend_suite import peak_concurrency, results

    write(tmp_path / "model.py", SLEEPY)
    sweep = write(tmp_path / "s.yaml", f"""
        name: nosite
        benchmark: "model:objective"
        search: {{method: list, points: [{{x: 0.1, sleep: 3}}, {{x: 0.2, sleep: 3}},
                                          {{x: 0.3, sleep: 3}}, {{x: 0.4, sleep: 3}}]}}
        resources: {{scheduler: slurm, nodes: 2, walltime: "00:05:00"}}
        retries: 0
        store: {tmp_path / "runs"}
    """)
    proc = run_candle("run", str(sweep), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "nosite")
    done = results(store)
    assert [r["status"] for r in done] == ["done"] * 4
    assert len({r["node"] for r in done}) == 2 and peak_concurrency(done) == 2
    script = (store.root / "slurm" / "pack.sbatch").read_text()
    assert "--partition" not in script and "OMPI_" not in script
    assert "#SBATCH --ntasks-per-node=1\n" in script
