"""Data parallelism inside one job: Horovod when the job has more than one rank.

Training code has one path: a 1-rank job gets a `Distribution` whose methods do nothing,
an R-rank job gets Horovod — `hvd.init()`, `DistributedOptimizer` (gradients averaged by
allreduce), the learning rate scaled by R, rank 0's weights broadcast before the first
step, metrics averaged at each epoch end, and each rank training on its own shard.
mpi4py carries what Horovod does not: rank 0 decides (e.g. which checkpoint to resume),
then broadcasts; results are gathered to rank 0, the only writer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from numpy.typing import NDArray


class Distribution:
    """One rank's view of its job: size 1 (no MPI at all) or Horovod over MPI."""

    def __init__(self, rank: int = 0, size: int = 1, hvd: Any = None, comm: Any = None) -> None:
        self.rank = rank
        self.size = size
        self.hvd = hvd
        self.comm = comm

    @classmethod
    def start(cls, rank: int, size: int) -> Distribution:
        """Initialise Horovod when the launcher started more than one rank."""
        if size <= 1:
            return cls()
        try:
            # mpi4py first: it initialises MPI with MPI_THREAD_MULTIPLE, which Horovod's
            # background thread needs; hvd.init() then shares that MPI.
            # isort: off
            from mpi4py import MPI
            import horovod.tensorflow.keras as hvd
            # isort: on
        except ImportError as exc:
            raise RuntimeError(f"a {size}-rank job needs Horovod and mpi4py ({exc}); "
                               "install candle with its [mpi] extra (scripts/setup.sh does)"
                               ) from exc
        hvd.init(comm=MPI.COMM_WORLD)
        if hvd.size() != size or hvd.rank() != rank:
            raise RuntimeError(f"Horovod sees rank {hvd.rank()} of {hvd.size()} but the "
                               f"launcher said {rank} of {size}: mixed MPI libraries?")
        return cls(rank, size, hvd, MPI.COMM_WORLD)

    @property
    def active(self) -> bool:
        return self.hvd is not None

    def learning_rate(self, base: float, scale_by_ranks: bool) -> float:
        """Horovod's rule: R ranks take R times the samples per step, so R times the lr."""
        return base * self.size if scale_by_ranks else base

    def optimizer(self, optimizer: Any) -> Any:
        return self.hvd.DistributedOptimizer(optimizer) if self.active else optimizer

    def shard(self, array: NDArray[Any], *, equal: bool) -> NDArray[Any]:
        """This rank's rows (every size-th from rank). ``equal`` trims every shard to the
        same length: unequal batch counts would leave one rank waiting in an allreduce."""
        if not self.active:
            return array
        rows = array[self.rank :: self.size]
        return rows[: len(array) // self.size] if equal else rows

    def callbacks_before(self) -> list[Any]:
        """Before all others: rank 0's initial (or resumed) weights go to every rank."""
        if not self.active:
            return []
        return [self.hvd.callbacks.BroadcastGlobalVariablesCallback(0)]

    def metric_average(self) -> list[Any]:
        """After the local-log capture, before anything that reads metrics."""
        if not self.active:
            return []
        return [self.hvd.callbacks.MetricAverageCallback()]

    def bcast(self, value: Any) -> Any:
        return self.comm.bcast(value, root=0) if self.active else value

    def gather(self, value: Any) -> list[Any]:
        """Every rank's value on rank 0 (others get []); also a barrier for the job."""
        if not self.active:
            return [value]
        gathered = self.comm.gather(value, root=0)
        return list(gathered) if gathered is not None else []


def data_digest(*arrays: Any) -> str:
    """sha256 (hex) of the arrays' bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def weights_digest(model: Any) -> str:
    """A checksum of all weights: equal on every rank iff data parallelism kept them in
    lock-step."""
    return data_digest(*model.get_weights())[:16]


_CURRENT = Distribution()


def current() -> Distribution:
    """The distribution `configure_tensorflow` set up for this process."""
    return _CURRENT


def use(distribution: Distribution) -> Distribution:
    global _CURRENT
    _CURRENT = distribution
    return distribution
