"""For mypy only: each backend module must satisfy `Backend` (a missing or misspelt
function fails `mypy --strict` here, not on a cluster). Imported by a test."""

from __future__ import annotations

from candle.schedulers.batch.backend import Backend
from candle.schedulers.pbs import backend as pbs_backend
from candle.schedulers.slurm import backend as slurm_backend

BACKENDS: dict[str, Backend] = {"slurm": slurm_backend, "pbs": pbs_backend}
