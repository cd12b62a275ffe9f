"""How an allocation is asked for (local, slurm): render, submit, batched status, cancel."""
