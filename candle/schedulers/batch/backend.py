"""What a batch scheduler must offer the generic submit / follow / allocation code.

Slurm and PBS each implement it as a module (``candle.schedulers.<name>.backend``); the
rest of candle never calls sbatch or qsub itself. A module satisfies the protocol
structurally, so tests can swap one function (``monkeypatch.setattr``) and the generic
code sees the change, because it looks the module up at each call."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, cast

from candle.launch._base import Launcher
from candle.schedulers._base import AllocState
from candle.spec.site import SiteConfig
from candle.supervisor.slots import SlotPool


class Backend(Protocol):
    NAME: str  # the run directory's folder for scripts and records, and the word users see
    SUFFIX: str  # of batch scripts: .sbatch, .pbs
    LABEL: str  # the scheduler's name as people write it: Slurm, PBS
    SUBMIT: str  # the submit command's name, for messages
    CAN_REQUEUE: bool  # may a user put their own running array task back in the queue?
    STOP_GRACE: float  # seconds jobs get to checkpoint on SIGTERM, within the kill grace

    # -- on the login node ------------------------------------------------------------
    def new_comment(self, run_id: str) -> str:
        """The tag every batch job of a run carries (this run, and one submission)."""
        ...

    def tagged_jobs(self) -> dict[str, str] | None:
        """{tag: job id} of this user's queued and running jobs; None if the query fails."""
        ...

    def submit(self, script: Path, comment: str, after: str = "") -> str:
        """Submit ``script`` once (a lost reply is found again by its tag); the job id."""
        ...

    def status(self, job_ids: list[str]) -> dict[str, AllocState]:
        """Every entry (jobs, array tasks) of ``job_ids`` in ONE query; {} if it fails."""
        ...

    def entries_of(self, states: dict[str, AllocState], job_id: str) -> dict[str, AllocState]:
        """A batch job's own entry, or its array tasks'."""
        ...

    def task_id(self, job_id: str, index: int) -> str:
        """The id of array task ``index`` of ``job_id``."""
        ...

    def cancel(self, job_ids: list[str]) -> None: ...

    def cluster_limits(self) -> tuple[int, int]:
        """(largest array, jobs this user may queue at once)."""
        ...

    def render_pack(self, *, run_id: str, comment: str, run_dir: Path, name: str,
                    walltime: str, nodes: int, tasks_per_node: int, gpus_per_node: int,
                    site: SiteConfig, signal_lead: int = 0) -> str: ...

    def render_array(self, *, run_id: str, comment: str, run_dir: Path, name: str,
                     walltime: str, ranks: int, cores_per_node: int, gpus_per_node: int,
                     count: int, throttle: int, chunk: str, site: SiteConfig,
                     signal_lead: int = 0) -> str: ...

    # -- inside an allocation -------------------------------------------------------
    def this_job(self) -> str:
        """This batch job's id ("" outside one)."""
        ...

    def array_index(self) -> int:
        """This array task's index (0 for a chunk that was submitted as a single job)."""
        ...

    def this_task(self) -> str:
        """This array task's own id, for requeue."""
        ...

    def allocation_end(self, job_id: str) -> float | None:
        """When this batch job's walltime runs out (epoch seconds); None if unknown."""
        ...

    def allocation_pool(self, gpus_per_node: int, site: SiteConfig) -> SlotPool:
        """This allocation's nodes, each with the slots the scheduler gave it."""
        ...

    def launcher(self, site: SiteConfig) -> Launcher:
        """How one job's ranks start inside this allocation."""
        ...

    def threads_per_job(self) -> int: ...

    def requeue(self, task_id: str) -> None: ...


SCHEDULERS = ("slurm", "pbs")


def backend_for(scheduler: str) -> Backend:
    """The backend module of ``scheduler`` (imported on first use)."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"no batch backend for scheduler {scheduler!r}")
    return cast(Backend, importlib.import_module(f"candle.schedulers.{scheduler}.backend"))
