"""Slurm's job states → AllocState, and the parsing of sacct/squeue output (arrays too)."""

from __future__ import annotations

import logging
import re

from candle.schedulers._base import AllocState

log = logging.getLogger("candle.schedulers")

SLURM_STATES: dict[str, AllocState] = {
    "PENDING": AllocState.PENDING, "CONFIGURING": AllocState.PENDING,
    "REQUEUED": AllocState.PENDING, "REQUEUE_HOLD": AllocState.PENDING,
    "REQUEUE_FED": AllocState.PENDING, "RESV_DEL_HOLD": AllocState.PENDING,
    "RUNNING": AllocState.RUNNING, "COMPLETING": AllocState.RUNNING,
    "RESIZING": AllocState.RUNNING, "SIGNALING": AllocState.RUNNING,
    "STAGE_OUT": AllocState.RUNNING, "SUSPENDED": AllocState.RUNNING,
    "STOPPED": AllocState.RUNNING,
    "COMPLETED": AllocState.COMPLETED,
    "FAILED": AllocState.FAILED, "BOOT_FAIL": AllocState.FAILED,
    "SPECIAL_EXIT": AllocState.FAILED,
    "TIMEOUT": AllocState.TIMEOUT, "DEADLINE": AllocState.TIMEOUT,
    "CANCELLED": AllocState.CANCELLED, "REVOKED": AllocState.CANCELLED,
    "PREEMPTED": AllocState.PREEMPTED,
    "OUT_OF_MEMORY": AllocState.OUT_OF_MEMORY,
    "NODE_FAIL": AllocState.NODE_FAIL,
}

_ARRAY = re.compile(r"^(\d+)_\[([^\]]+)\]$")


def translate(raw: str) -> AllocState:
    """'CANCELLED by 0' → CANCELLED; an unknown word is logged and becomes UNKNOWN."""
    word = raw.strip().split(" ")[0].rstrip("+")
    state = SLURM_STATES.get(word)
    if state is None:
        log.warning("unknown Slurm state %r; treated as UNKNOWN", raw)
        return AllocState.UNKNOWN
    return state


def expand_job_id(job_id: str) -> list[str]:
    """'12_[0-3,7%2]' → ['12_0', '12_1', '12_2', '12_3', '12_7']; other ids unchanged."""
    match = _ARRAY.match(job_id)
    if not match:
        return [job_id]
    base, spec = match.group(1), match.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        if "-" in part:
            low, high = part.split("-")
            out += [f"{base}_{i}" for i in range(int(low), int(high) + 1)]
        elif part:
            out.append(f"{base}_{part}")
    return out


def entries_of(states: dict[str, AllocState], job_id: str) -> dict[str, AllocState]:
    """A batch job's own entry, or its array tasks' (``<id>_<index>``)."""
    return {k: s for k, s in states.items() if k == job_id or k.startswith(job_id + "_")}


def parse_table(text: str) -> dict[str, AllocState]:
    """Lines of 'JOBID|STATE' (sacct -P / squeue -o '%i|%T') → {job or task id: state}."""
    states: dict[str, AllocState] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job_id, raw = line.split("|", 2)[:2]
        for one in expand_job_id(job_id.strip()):
            states[one] = translate(raw)
    return states
