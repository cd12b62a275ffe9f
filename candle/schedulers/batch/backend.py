"""What a batch scheduler must offer the generic submit / follow / allocation code, in two
parts, as Parsl splits providers from launchers: a `Provider` on the login node (scripts,
submit, one batched status query, cancel, limits, tags) and an `Allocation` inside one of
its batch jobs (this job, its hosts and slots, its end, how ranks start, requeue). A new
scheduler is a provider module (``candle.schedulers.<name>.backend``) and an allocation
module (``.allocation``); the rest of candle never calls sbatch or qsub itself. A module
satisfies its protocol structurally, so tests can swap one function (``monkeypatch.setattr``)
and the generic code sees the change, because it looks the module up at each call."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, cast

from candle.launch._base import Launcher
from candle.schedulers._base import AllocState
from candle.spec.site import SiteConfig
from candle.supervisor.slots import SlotPool


class Provider(Protocol):
    """The login node's side: asks for allocations and watches them."""

    NAME: str  # the run directory's folder for scripts and records, and the word users see
    SUFFIX: str  # of batch scripts: .sbatch, .pbs
    LABEL: str  # the scheduler's name as people write it: Slurm, PBS
    SUBMIT: str  # the submit command's name, for messages

    def tagged_jobs(self) -> dict[str, str] | None:
        """{tag: job id} of this user's queued and running jobs; None if the query fails."""
        ...

    def submit(self, script: Path, tag: str, after: str = "", ok: bool = False) -> str:
        """Submit ``script`` once (a lost reply is found again by its tag); the job id.
        ``after``: job ids (``a:b``) it waits for: ended (afterany), or with ``ok``
        succeeded (afterok)."""
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

    def render_pack(self, *, run_id: str, tag: str, run_dir: Path, name: str,
                    walltime: str, nodes: int, tasks_per_node: int, gpus_per_node: int,
                    site: SiteConfig, signal_lead: int = 0) -> str: ...

    def render_array(self, *, run_id: str, tag: str, run_dir: Path, name: str,
                     walltime: str, ranks: int, cores_per_node: int, gpus_per_node: int,
                     count: int, throttle: int, chunk: str, site: SiteConfig,
                     signal_lead: int = 0) -> str: ...


class Allocation(Protocol):
    """Inside a batch job: what it was given, how long it has, how ranks start in it."""

    CAN_REQUEUE: bool  # may a user put their own running array task back in the queue?
    STOP_GRACE: float  # seconds jobs get to checkpoint on SIGTERM, within the kill grace

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


def _module(scheduler: str, part: str) -> object:
    if scheduler not in SCHEDULERS:
        raise ValueError(f"no batch backend for scheduler {scheduler!r}")
    return importlib.import_module(f"candle.schedulers.{scheduler}.{part}")


def backend_for(scheduler: str) -> Provider:
    """The provider module of ``scheduler`` (imported on first use)."""
    return cast(Provider, _module(scheduler, "backend"))


def allocation_for(scheduler: str) -> Allocation:
    """The allocation module of ``scheduler`` (imported on first use)."""
    return cast(Allocation, _module(scheduler, "allocation"))
