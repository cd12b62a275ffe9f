"""Sweep → Jobs (static searches: grid, random, list × CV folds × UQ replicas)."""

from candle.plan.jobs import Job, JobTemplate, count_points, iter_jobs, job_id

__all__ = ["Job", "JobTemplate", "count_points", "iter_jobs", "job_id"]
