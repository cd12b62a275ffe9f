"""Slurm: sbatch scripts (pack and array modes), batched sacct status, scancel."""
