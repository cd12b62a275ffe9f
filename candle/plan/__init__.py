"""Sweep → Jobs (static searches: grid, random, list × CV folds × UQ replicas)."""

from candle.plan.jobs import Job, count_points, iter_jobs, job_id

__all__ = ["Job", "count_points", "iter_jobs", "job_id"]
