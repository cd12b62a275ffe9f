"""`qstat -f -F json` documents → AllocState per job and array subjob.

Shapes follow real OpenPBS 23.06 output (tests/schedulers/pbs_samples/): a plain job
``12.server``, an array ``16[].server`` whose subjobs are ``16[3].server``. A finished job
is ``F`` (or ``X``, a subjob of an array still running); what happened to it is in
``Exit_status``, ``substate`` and ``comment``."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from candle.schedulers._base import AllocState

log = logging.getLogger("candle.schedulers")

LIVE_STATES: dict[str, AllocState] = {
    "Q": AllocState.PENDING, "H": AllocState.PENDING, "W": AllocState.PENDING,
    "T": AllocState.PENDING,  # queued, held, waiting for its start time, in transit
    "R": AllocState.RUNNING, "E": AllocState.RUNNING, "B": AllocState.RUNNING,
    "S": AllocState.RUNNING, "U": AllocState.RUNNING,  # running, exiting, array begun,
}                                                        # suspended (by PBS or by the user)
FINISHED = ("F", "X")

SUBSTATE_DELETED = 91  # qdel (91), finished ok (92), finished failed (93)
# Negative Exit_status values are set by PBS itself (OpenPBS src/include/job.h).
EXEC_KILL_WALLTIME = -29
EXEC_KILL_MEMORY = (-26, -27)  # vmem, mem
EXEC_NODE_LOST = (-14, -20)  # a sister node or the mother superior failed
SIGNAL_BASE = 256  # Exit_status 256 + n: the job's shell died of signal n


def translate(job: dict[str, Any]) -> AllocState:
    """One job's (or subjob's) attributes → its state."""
    letter = str(job.get("job_state", ""))
    if letter in LIVE_STATES:
        return LIVE_STATES[letter]
    if letter not in FINISHED:
        log.warning("unknown PBS job_state %r; treated as UNKNOWN", letter)
        return AllocState.UNKNOWN
    code = job.get("Exit_status")
    comment = str(job.get("comment", ""))
    if code == EXEC_KILL_WALLTIME or "exceeded resource walltime" in comment:
        return AllocState.TIMEOUT
    if job.get("substate") == SUBSTATE_DELETED:
        return AllocState.CANCELLED  # qdel: queued (no Exit_status) or running (256+15)
    if code == 0:
        return AllocState.COMPLETED
    if code in EXEC_KILL_MEMORY:
        return AllocState.OUT_OF_MEMORY
    if code in EXEC_NODE_LOST:
        return AllocState.NODE_FAIL
    return AllocState.FAILED  # the script's own exit code, a signal, or a launch failure


def load_document(text: str) -> dict[str, Any]:
    """Parse qstat's JSON. Some PBS versions print values (in Variable_List, mostly) with
    unescaped characters; then the environment lists, which candle only reads for its own
    tag, are dropped and the rest parsed again."""
    try:
        data: dict[str, Any] = json.loads(text, strict=False)
        return data
    except json.JSONDecodeError:
        stripped = re.sub(r'"Variable_List"\s*:\s*\{.*?\n\s*\},?', "", text, flags=re.DOTALL)
        try:
            data = json.loads(stripped, strict=False)
        except json.JSONDecodeError as exc:
            log.warning("cannot parse qstat's JSON (%s); no states this time", exc)
            return {}
        log.warning("qstat printed invalid JSON in Variable_List; read without it")
        return data


def parse_jobs(text: str) -> dict[str, AllocState]:
    """A `qstat -x -t -f -F json` document → {job, array or subjob id: state}."""
    jobs = load_document(text).get("Jobs", {}) or {}
    return {job_id: translate(attrs) for job_id, attrs in jobs.items()}


def _array_parts(job_id: str) -> tuple[str, str] | None:
    """'16[].server' → ('16', '.server'); None for a plain job id."""
    match = re.fullmatch(r"(\d+)\[\](.*)", job_id)
    return (match.group(1), match.group(2)) if match else None


def entries_of(states: dict[str, AllocState], job_id: str) -> dict[str, AllocState]:
    """An array's subjobs (``16[0].server`` ...) when qstat listed them, else the job's own
    entry (a plain job, or an array whose subjobs are not known yet)."""
    parts = _array_parts(job_id)
    if parts is not None:
        base, rest = parts
        pattern = re.compile(rf"{re.escape(base)}\[\d+\]{re.escape(rest)}")
        subjobs = {k: s for k, s in states.items() if pattern.fullmatch(k)}
        if subjobs:
            return subjobs
    return {job_id: states[job_id]} if job_id in states else {}


def task_id(job_id: str, index: int) -> str:
    """Subjob ``index`` of array ``16[].server`` is ``16[index].server``; a chunk of one
    job is submitted as a plain job, which is its own task."""
    parts = _array_parts(job_id)
    return f"{parts[0]}[{index}]{parts[1]}" if parts else job_id


def walltime_seconds(value: str) -> int:
    """PBS durations: [[HH:]MM:]SS, hours unbounded ('100:00:00')."""
    seconds = 0
    for part in value.strip().split(":"):
        seconds = seconds * 60 + int(part)
    return seconds
