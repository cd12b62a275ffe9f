"""Slurm's `Provider`: sbatch (never twice for one submission), one batched sacct for all
of a run's jobs (squeue when accounting is off), scancel, the cluster's limits, and
(re-exported) the scripts."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from candle.schedulers._base import AllocState
from candle.schedulers._command import Retry, SchedulerError, run_cmd
from candle.schedulers.slurm.render import render_array as render_array
from candle.schedulers.slurm.render import render_pack as render_pack
from candle.schedulers.slurm.states import entries_of as entries_of
from candle.schedulers.slurm.states import parse_table

log = logging.getLogger("candle.schedulers")

NAME = "slurm"
LABEL = "Slurm"
SUFFIX = ".sbatch"
SUBMIT = "sbatch"

STATUS_RETRY = Retry(attempts=3, first_delay=1.0, timeout=60.0)
SUBMIT_RETRY = Retry(attempts=4, first_delay=2.0, timeout=120.0)


def tagged_jobs() -> dict[str, str] | None:
    """{tag (a job's --comment): job id} of this user's queued and running jobs; None if
    squeue fails."""
    try:
        out = run_cmd(["squeue", "-h", "-o", "%i|%k", "-u", _user()], retry=STATUS_RETRY)
    except SchedulerError:
        return None
    found: dict[str, str] = {}
    for line in out.splitlines():
        job_id, _, tag = line.partition("|")
        found.setdefault(tag.strip(), job_id.split("_")[0].strip())
    return found


def find_by_tag(tag: str) -> str | None:
    """The id of a job already submitted with ``tag`` (sbatch reached the controller but
    its reply was lost, or its submitter died before writing the id down), or None."""
    return (tagged_jobs() or {}).get(tag)


def submit(script: Path, tag: str, after: str = "", ok: bool = False) -> str:
    """sbatch ``script`` from its own folder (its outputs are relative); return the job id.
    ``after``: start only once that job has ended (a continuation allocation), or with
    ``ok`` once those jobs (``a:b``: each of them, every array task) have all succeeded (a
    leave-out tree's next stage; a failed one cancels it: --kill-on-invalid-dep); the new
    ``tag`` then overrides the one written in the script."""

    def already_there(_: SchedulerError) -> str | None:
        found = find_by_tag(tag)
        if found is not None:
            log.warning("sbatch reply was lost but job %s with our tag exists; not "
                        "submitting again", found)
        return found

    extra = [f"--comment={tag}", f"--dependency={'afterok' if ok else 'afterany'}:{after}"
             ] if after else []
    if after and ok:
        extra.append("--kill-on-invalid-dep=yes")
    out = run_cmd(["sbatch", "--parsable", *extra, script.name], retry=SUBMIT_RETRY,
                  before_retry=already_there, cwd=script.parent)
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise SchedulerError(["sbatch", str(script)], 0, out, "no job id in sbatch's reply")
    return job_id


def status(job_ids: list[str]) -> dict[str, AllocState]:
    """States of ``job_ids`` (and their array tasks) in ONE sacct call; squeue if sacct is
    unavailable. A failed poll is logged and answers {} (the caller polls again later)."""
    if not job_ids:
        return {}
    ids = ",".join(job_ids)
    try:
        out = run_cmd(["sacct", "-n", "-P", "-X", "-j", ids, "--format=JobID,State"],
                      retry=STATUS_RETRY)
        return parse_table(out)
    except SchedulerError as exc:
        log.warning("sacct failed (%s); asking squeue", exc)
    try:
        out = run_cmd(["squeue", "-h", "-j", ids, "-o", "%i|%T", "--states=all"],
                      retry=STATUS_RETRY)
        return parse_table(out)
    except SchedulerError as exc:
        log.warning("squeue failed too: %s", exc)
        return {}


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        run_cmd(["scancel", *job_ids], retry=STATUS_RETRY)


def cluster_limits() -> tuple[int, int]:
    """(MaxArraySize, jobs we may queue): `scontrol show config`'s MaxArraySize and
    MaxJobCount, lowered to the user's MaxSubmitJobs from sacctmgr if set."""
    try:
        out = run_cmd(["scontrol", "show", "config"], retry=STATUS_RETRY)
    except SchedulerError as exc:
        log.warning("cannot read the cluster's limits (%s); assuming Slurm's defaults", exc)
        return 1001, 10000
    found = dict(re.findall(r"^(MaxArraySize|MaxJobCount)\s*=\s*(\d+)", out, re.MULTILINE))
    max_jobs = int(found.get("MaxJobCount", 10000))
    try:  # the user's own MaxSubmitJobs (association limit), when the site sets one
        limits = run_cmd(["sacctmgr", "-n", "-P", "show", "assoc", f"user={_user()}",
                          "format=MaxSubmit"], retry=STATUS_RETRY)
        per_user = [int(v) for v in limits.split() if v.strip().isdigit()]
        if per_user:
            max_jobs = min(max_jobs, min(per_user))
    except SchedulerError:
        pass
    return int(found.get("MaxArraySize", 1001)), max_jobs


def task_id(job_id: str, index: int) -> str:
    return f"{job_id}_{index}"


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())
