"""PBS Pro / OpenPBS's `Provider`: qsub (never twice for one submission: each job carries
its tag in ``-v CANDLE_TAG``), one `qstat -x -t -f -F json` for all of a run's jobs and
subjobs, qdel, the server's limits, and (re-exported) the scripts."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from candle.schedulers._base import AllocState
from candle.schedulers._command import Retry, SchedulerError, run_cmd
from candle.schedulers.pbs.render import render_array as render_array
from candle.schedulers.pbs.render import render_pack as render_pack
from candle.schedulers.pbs.states import entries_of as entries_of
from candle.schedulers.pbs.states import load_document, parse_jobs
from candle.schedulers.pbs.states import task_id as task_id

log = logging.getLogger("candle.schedulers")

NAME = "pbs"
LABEL = "PBS"
SUFFIX = ".pbs"
SUBMIT = "qsub"

TAG_VARIABLE = "CANDLE_TAG"
UNKNOWN_JOB = 153  # qstat/qdel: "Unknown Job Id" (history expired, or never there)
JOB_FINISHED = 35  # qdel: "Job has finished"
DEFAULT_MAX_ARRAY = 10000  # OpenPBS's max_array_size when the server does not say
DEFAULT_MAX_QUEUED = 10000

STATUS_RETRY = Retry(attempts=3, first_delay=1.0, timeout=60.0)
SUBMIT_RETRY = Retry(attempts=4, first_delay=2.0, timeout=120.0)
JOB_ID = re.compile(r"^\d+(\[\])?(\.[\w.-]+)?$")


def query(argv: list[str]) -> str:
    """qstat's JSON even when some ids are unknown (exit 153 with the others printed)."""
    try:
        return run_cmd(argv, retry=STATUS_RETRY)
    except SchedulerError as exc:
        if exc.code == UNKNOWN_JOB:
            return exc.stdout
        raise


def tagged_jobs() -> dict[str, str] | None:
    """{tag: job id} of this user's queued and running jobs; None if qstat fails."""
    try:
        document = load_document(query(["qstat", "-f", "-F", "json"]))
    except SchedulerError:
        return None
    found: dict[str, str] = {}
    user = _user()
    for job_id, attrs in (document.get("Jobs") or {}).items():
        owner = str(attrs.get("Job_Owner", "")).split("@")[0]
        tag = (attrs.get("Variable_List") or {}).get(TAG_VARIABLE)
        if owner == user and tag and "[" not in job_id.replace("[]", ""):  # no subjobs
            found.setdefault(str(tag), job_id)
    return found


def find_by_tag(tag: str) -> str | None:
    return (tagged_jobs() or {}).get(tag)


def submit(script: Path, tag: str, after: str = "", ok: bool = False) -> str:
    """qsub ``script`` from its own folder (its -o path is relative); return the job id
    ('12.server', an array '16[].server'). ``after``: start once that job has ended, for
    any reason (afterany: a walltime-killed allocation ends with Exit_status -29, which
    afterok would wait for forever); with ``ok``, once those jobs (``a:b``) have all
    succeeded (a leave-out tree's next stage; PBS deletes it if one failed). The new tag
    then overrides the script's."""

    def already_there(_: SchedulerError) -> str | None:
        found = find_by_tag(tag)
        if found is not None:
            log.warning("qsub reply was lost but job %s with our tag exists; not "
                        "submitting again", found)
        return found

    kind = "afterok" if ok else "afterany"
    extra = ["-v", f"{TAG_VARIABLE}={tag}", "-W", f"depend={kind}:{after}"] if after else []
    out = run_cmd(["qsub", *extra, script.name], retry=SUBMIT_RETRY,
                  before_retry=already_there, cwd=script.parent)
    lines = out.strip().splitlines()
    job_id = lines[-1].strip() if lines else ""
    if not JOB_ID.match(job_id):
        raise SchedulerError(["qsub", str(script)], 0, out, "no job id in qsub's reply")
    return job_id


def status(job_ids: list[str]) -> dict[str, AllocState]:
    """States of ``job_ids`` and their subjobs, finished ones included (-x), in ONE qstat
    call. A failed poll is logged and answers {} (the caller polls again later)."""
    if not job_ids:
        return {}
    try:
        return parse_jobs(query(["qstat", "-x", "-t", "-f", "-F", "json", *job_ids]))
    except SchedulerError as exc:
        log.warning("qstat failed: %s", exc)
        return {}


def cancel(job_ids: list[str]) -> None:
    """qdel; a job that has already finished (35) or is gone (153) needs nothing more."""
    if not job_ids:
        return
    try:
        run_cmd(["qdel", *job_ids], retry=STATUS_RETRY)
    except SchedulerError as exc:
        if exc.code not in (JOB_FINISHED, UNKNOWN_JOB):
            raise


def _limit_for_user(value: str, user: str) -> int | None:
    """'[u:PBS_GENERIC=100]' (or '[u:alice=50]') → the number that applies to ``user``."""
    found = [int(n) for who, n in re.findall(r"u:([\w.-]+)=(\d+)", value)
             if who in ("PBS_GENERIC", user)]
    return min(found) if found else None


def cluster_limits() -> tuple[int, int]:
    """(max_array_size, jobs this user may queue): the server's attributes, from
    `qstat -B -f -F json` (subjobs count as jobs against max_queued)."""
    try:
        document = load_document(run_cmd(["qstat", "-B", "-f", "-F", "json"],
                                         retry=STATUS_RETRY))
    except SchedulerError as exc:
        log.warning("cannot read the server's limits (%s); assuming OpenPBS's defaults", exc)
        return DEFAULT_MAX_ARRAY, DEFAULT_MAX_QUEUED
    servers = list((document.get("Server") or {}).values())
    attrs = servers[0] if servers else {}
    max_array = int(attrs.get("max_array_size", DEFAULT_MAX_ARRAY))
    queued = _limit_for_user(str(attrs.get("max_queued", "")), _user())
    return max_array, queued if queued is not None else DEFAULT_MAX_QUEUED


def _user() -> str:
    import pwd

    return (os.environ.get("USER") or os.environ.get("LOGNAME")
            or pwd.getpwuid(os.getuid()).pw_name)
