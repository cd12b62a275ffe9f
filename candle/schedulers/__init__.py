"""How an allocation is asked for: `batch/` for any scheduler, `slurm/` and `pbs/` behind it."""
