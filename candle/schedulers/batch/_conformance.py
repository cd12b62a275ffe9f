"""For mypy only: each scheduler's modules must satisfy `Provider` and `Allocation` (a
missing or misspelt function fails `mypy --strict` here, not on a cluster)."""

from __future__ import annotations

from candle.schedulers.batch.backend import Allocation, Provider
from candle.schedulers.pbs import allocation as pbs_allocation
from candle.schedulers.pbs import backend as pbs_backend
from candle.schedulers.slurm import allocation as slurm_allocation
from candle.schedulers.slurm import backend as slurm_backend

PROVIDERS: dict[str, Provider] = {"slurm": slurm_backend, "pbs": pbs_backend}
ALLOCATIONS: dict[str, Allocation] = {"slurm": slurm_allocation, "pbs": pbs_allocation}
