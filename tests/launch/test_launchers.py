"""Each launcher's exact argv (golden), and per-rank GPU binding."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from candle.launch._base import LaunchRequest, Placement, job_env
from candle.launch.gpus import bind_gpu
from candle.launch.local import LocalLauncher
from candle.launch.mpiexec import MpiexecLauncher
from candle.launch.srun import SrunLauncher

JOB = [sys.executable, "-m", "candle.job", "/runs/r", "abc123", "--attempt", "2",
       "--threads", "4"]


def request(ranks: int, placement: Placement | None = None) -> LaunchRequest:
    return LaunchRequest(Path("/runs/r"), "abc123", ranks, 2, 4, placement)


def test_local_one_rank_is_a_plain_process() -> None:
    assert LocalLauncher().argv(request(1)) == JOB


def test_local_mpirun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert LocalLauncher().argv(request(2)) == ["mpirun", "-np", "2", "--bind-to", "none", *JOB]
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert LocalLauncher().argv(request(4)) == [
        "mpirun", "-np", "4", "--bind-to", "none", "--oversubscribe", "--allow-run-as-root",
        *JOB]


def test_srun_step_on_its_nodes() -> None:
    placement = Placement((("node1", 2), ("node2", 2)))
    assert SrunLauncher().argv(request(4, placement)) == [
        "srun", "--exact", "--mpi=pmix", "-n", "4", "--cpus-per-task=4",
        "--kill-on-bad-exit=1", "-N", "2", "--nodelist=node1,node2", "--ntasks-per-node=2",
        *JOB]


def test_mpiexec_pals_style() -> None:
    placement = Placement((("x3001c0s1b0n0", 4),), gpus=(0, 1, 2, 3))
    assert MpiexecLauncher().argv(request(4, placement)) == [
        "mpiexec", "-n", "4", "-ppn", "4", "--hosts", "x3001c0s1b0n0", "--cpu-bind", "depth",
        "-d", "4", *JOB]
    assert job_env(request(4, placement)) == {"CANDLE_GPUS": "0,1,2,3"}
    assert job_env(request(1, Placement((("n", 1),)))) == {}


def test_mpiexec_hydra_and_openmpi_styles(monkeypatch: pytest.MonkeyPatch) -> None:
    placement = Placement((("n1", 2), ("n2", 2)))
    assert MpiexecLauncher(flavour="hydra").argv(request(4, placement)) == [
        "mpiexec", "-n", "4", "-ppn", "2", "-hosts", "n1,n2", *JOB]
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert MpiexecLauncher(flavour="openmpi").argv(request(4, placement)) == [
        "mpiexec", "-n", "4", "--host", "n1:2,n2:2", "--bind-to", "none", *JOB]
    with pytest.raises(ValueError, match="flavour"):
        MpiexecLauncher(flavour="pmix")


@pytest.mark.parametrize(("env", "expected"), [
    ({"CANDLE_GPUS": "2,3", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, "3"),
    ({"CANDLE_GPUS": "2,3", "SLURM_LOCALID": "0"}, "2"),
    ({"CANDLE_GPUS": "0,1,2,3", "PALS_LOCAL_RANKID": "6"}, "2"),
    ({"CANDLE_GPUS": "5"}, "5"),
    # Polaris-like affinity: ids 0..3 are physical GPUs 3..0
    ({"CANDLE_GPUS": "0,1,2,3", "PALS_LOCAL_RANKID": "0", "CANDLE_GPU_ORDER": "3,2,1,0"}, "3"),
    ({"CANDLE_GPUS": "2,3", "PALS_LOCAL_RANKID": "1", "CANDLE_GPU_ORDER": "3,2,1,0"}, "0"),
    ({"CANDLE_GPUS": "0", "MPI_LOCALRANKID": "0", "CANDLE_GPU_ORDER": "3,2,1,0"}, "3"),
])
def test_each_rank_binds_its_gpu(env: dict[str, str], expected: str) -> None:
    assert bind_gpu(env) == expected
    assert env["CUDA_VISIBLE_DEVICES"] == expected


def test_no_gpus_leaves_the_environment_alone() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "7"}
    assert bind_gpu(env) is None
    assert env == {"CUDA_VISIBLE_DEVICES": "7"}


def test_open_mpi_launches_wait_half_the_stop_grace_before_sigkilling_ranks() -> None:
    """Open MPI's mpirun, sent SIGTERM, waits odls_base_sigkill_timeout twice before it
    SIGKILLs its ranks (tests/supervisor/test_stop_signals.py shows why it matters)."""
    two = LaunchRequest(Path("/runs/r"), "abc123", 2, 1, 1, stop_grace=30)
    yield_ = {"OMPI_MCA_mpi_yield_when_idle": "1"}  # issue 19: no busy-polling ranks
    held = {"OMPI_MCA_odls_base_sigkill_timeout": "15", **yield_}
    assert LocalLauncher().env(two) == held
    assert MpiexecLauncher(flavour="openmpi").env(two) == held
    assert MpiexecLauncher(flavour="openmpi").env(
        LaunchRequest(Path("/runs/r"), "abc123", 2, 1, 1, stop_grace=5)) == {
        "OMPI_MCA_odls_base_sigkill_timeout": "3", **yield_}
    assert LocalLauncher().env(request(1)) == {}  # no mpirun for one rank
    assert LocalLauncher().env(request(2)) == yield_  # no grace asked for
    assert MpiexecLauncher(flavour="pals").env(two) == {}
    assert SrunLauncher().env(two) == yield_  # Open MPI ranks under srun poll alike
    assert SrunLauncher().env(request(1)) == {}


def test_warm_workers_start_once_per_node_through_each_launcher(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm worker is one process on its node, its stdin and stdout forwarded: srun and
    mpiexec run one task there, holding the CPUs of the jobs it will fork."""
    monkeypatch.setattr("os.geteuid", lambda: 0)
    run = Path("/runs/r")
    worker = [sys.executable, "-m", "candle.job.worker", "/runs/r"]
    assert LocalLauncher().worker_argv(run, "localhost", 2) == worker
    assert SrunLauncher().worker_argv(run, "nid01", 8) == [
        "srun", "--exact", "--mpi=none", "-N", "1", "-n", "1", "--nodelist=nid01",
        "--cpus-per-task=8", "--kill-on-bad-exit=1", *worker]
    assert MpiexecLauncher(flavour="pals").worker_argv(run, "x1", 4) == [
        "mpiexec", "-n", "1", "-ppn", "1", "--hosts", "x1", "--cpu-bind", "none", *worker]
    assert MpiexecLauncher(flavour="hydra").worker_argv(run, "x1", 4) == [
        "mpiexec", "-n", "1", "-ppn", "1", "-hosts", "x1", *worker]
    assert MpiexecLauncher(flavour="openmpi").worker_argv(run, "x1", 4) == [
        "mpiexec", "-n", "1", "--host", "x1:1", "--bind-to", "none", "--allow-run-as-root",
        *worker]
