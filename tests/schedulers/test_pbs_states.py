"""PBS status parsing, on REAL OpenPBS 23.06.06 output (tests/schedulers/pbs_samples/,
captured from a live server; see its README). No PBS server runs here: these documents
are what candle's parser is held to."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from candle.schedulers._base import AllocState
from candle.schedulers.pbs import allocation, backend
from candle.schedulers.pbs.render import pbs_walltime
from candle.schedulers.pbs.states import (
    entries_of,
    load_document,
    parse_jobs,
    task_id,
    walltime_seconds,
)

SAMPLES = Path(__file__).parent / "pbs_samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


@pytest.mark.parametrize(("name", "job_id", "state"), [
    ("queued_held.json", "15.vm", AllocState.PENDING),
    ("running.json", "18.vm", AllocState.RUNNING),
    ("array_parent_running.json", "16[].vm", AllocState.RUNNING),  # B: array begun
    ("finished_ok.json", "12.vm", AllocState.COMPLETED),
    ("finished_exit3.json", "13.vm", AllocState.FAILED),
    ("finished_walltime_exceeded.json", "14.vm", AllocState.TIMEOUT),  # Exit_status -29
    ("finished_deleted_while_running.json", "18.vm", AllocState.CANCELLED),  # 271, substate 91
    ("finished_deleted_while_held.json", "15.vm", AllocState.CANCELLED),  # no Exit_status
])
def test_each_real_state(name: str, job_id: str, state: AllocState) -> None:
    assert parse_jobs(sample(name)) == {job_id: state}


def test_array_subjobs_while_running() -> None:
    states = parse_jobs(sample("array_subjobs_running.json"))
    assert entries_of(states, "16[].vm") == {
        "16[0].vm": AllocState.COMPLETED,  # X: expired subjob, Exit_status 0
        "16[1].vm": AllocState.RUNNING, "16[2].vm": AllocState.PENDING,
        "16[3].vm": AllocState.PENDING}


def test_finished_array_keeps_the_failed_subjob() -> None:
    """The parent says Exit_status 0; only its subjobs tell that subjob 2 exited 7."""
    states = parse_jobs(sample("array_finished_with_subjobs.json"))
    mine = entries_of(states, "16[].vm")
    assert mine[task_id("16[].vm", 2)] is AllocState.FAILED
    assert [s for k, s in sorted(mine.items()) if k != "16[2].vm"] == [AllocState.COMPLETED] * 3
    assert "16[].vm" not in mine  # the parent is not counted as a fifth task


def test_unknown_job_document_has_no_jobs() -> None:
    assert parse_jobs(sample("unknown_job.json")) == {}
    assert entries_of({}, "99999.vm") == {}


def test_plain_job_is_its_own_task() -> None:
    assert task_id("12.vm", 0) == "12.vm"
    assert task_id("16[].vm", 3) == "16[3].vm"
    assert entries_of(parse_jobs(sample("finished_ok.json")), "12.vm") == {
        "12.vm": AllocState.COMPLETED}


def test_walltimes_both_ways() -> None:
    assert walltime_seconds("00:00:05") == 5
    assert walltime_seconds("100:00:00") == 360000
    assert pbs_walltime("1-02:03:04") == "26:03:04"  # candle's D-HH:MM:SS → hours


def test_bad_json_in_variable_list_is_survived() -> None:
    """Some PBS versions print environment values unescaped; states still come through."""
    text = sample("running.json").replace('"PBS_O_HOME": "/home/pbsuser"',
                                          '"PBS_O_HOME": "/home/a"b"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert parse_jobs(text) == {"18.vm": AllocState.RUNNING}
    assert load_document("not json at all") == {}


def test_allocation_end_from_stime_and_walltime(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walltime warning PBS lacks is candle's own clock: stime + walltime."""
    document = json.loads(sample("running.json"))
    started = time.mktime(time.strptime("Sat Nov 21 22:38:35 2026", allocation.STIME_FORMAT))
    assert document["timestamp"] == started  # the real server's epoch and its stime agree
    monkeypatch.setattr(backend, "run_cmd", lambda argv, **_: json.dumps(document))
    assert allocation.allocation_end("18.vm") == started + 300  # walltime 00:05:00
    assert allocation.allocation_end("") is None
    document["timestamp"] = started - 3600  # stime an hour ahead: zones differ, not trusted
    assert allocation.allocation_end("18.vm") is None
    document["timestamp"] = started + 3600  # running for longer than its walltime
    assert allocation.allocation_end("18.vm") is None


def test_tagged_jobs_reads_owner_and_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    document = json.loads(sample("array_subjobs_running.json"))
    document["Jobs"]["16[].vm"]["Variable_List"]["CANDLE_TAG"] = "candle-run:abc:1234"
    monkeypatch.setattr(backend, "run_cmd", lambda argv, **_: json.dumps(document))
    monkeypatch.setenv("USER", "pbsuser")
    assert backend.tagged_jobs() == {"candle-run:abc:1234": "16[].vm"}
    monkeypatch.setenv("USER", "someone-else")
    assert backend.tagged_jobs() == {}


def test_server_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    server = {"timestamp": 1, "pbs_version": "23.06.06", "pbs_server": "vm", "Server": {
        "vm": {"server_state": "Active", "max_array_size": 500,
               "max_queued": "[u:PBS_GENERIC=100]"}}}
    monkeypatch.setattr(backend, "run_cmd", lambda argv, **_: json.dumps(server))
    assert backend.cluster_limits() == (500, 100)
    del server["Server"]["vm"]["max_queued"]
    assert backend.cluster_limits() == (500, backend.DEFAULT_MAX_QUEUED)


def test_qsub_replies_and_qdel_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ids real qsub printed (qsub_stdout.txt), and qdel's real exit codes for jobs that
    are gone (35: finished, 153: unknown), which cancelling needs no more from."""
    from candle.schedulers._command import SchedulerError

    printed = [line.split(": ")[1] for line in sample("qsub_stdout.txt").splitlines()]
    assert printed == ["12.vm", "16[].vm"]
    script = tmp_path / "pack.pbs"
    script.write_text("#!/bin/bash\n")
    for reply in printed:
        monkeypatch.setattr(backend, "run_cmd", lambda argv, reply=reply, **_: reply + "\n")
        assert backend.submit(script, "candle-run:abc:1") == reply
    monkeypatch.setattr(backend, "run_cmd", lambda argv, **_: "qsub: illegal -l value\n")
    with pytest.raises(SchedulerError, match="no job id"):
        backend.submit(script, "candle-run:abc:1")

    codes = dict(line.rsplit(" rc=", 1) for line in sample("qdel_exit_codes.txt").splitlines()
                 if " rc=" in line)
    assert codes == {"qdel running": "0", "qdel held": "0", "qdel unknown": "153",
                     "qdel finished": "35"}
    for code in (int(codes["qdel unknown"]), int(codes["qdel finished"])):
        def gone(argv: list[str], code: int = code, **_: object) -> str:
            raise SchedulerError(argv, code, "", "qdel: ...")
        monkeypatch.setattr(backend, "run_cmd", gone)
        backend.cancel(["12.vm"])  # nothing raised: the job is already over

    def refused(argv: list[str], **_: object) -> str:
        raise SchedulerError(argv, 159, "", "qdel: Unauthorized Request")
    monkeypatch.setattr(backend, "run_cmd", refused)
    with pytest.raises(SchedulerError):
        backend.cancel(["12.vm"])


@pytest.mark.parametrize(("letter", "state"), [
    ("Q", AllocState.PENDING), ("H", AllocState.PENDING), ("W", AllocState.PENDING),
    ("T", AllocState.PENDING), ("R", AllocState.RUNNING), ("E", AllocState.RUNNING),
    ("B", AllocState.RUNNING), ("S", AllocState.RUNNING), ("U", AllocState.RUNNING),
    ("M", AllocState.UNKNOWN),  # moved to another server: not ours to follow
])
def test_live_letters_without_a_sample(letter: str, state: AllocState) -> None:
    """The letters the samples do not show (E, W, S, T, U, M), from the qstat man page."""
    from candle.schedulers.pbs.states import translate

    assert translate({"job_state": letter}) is state


@pytest.mark.parametrize(("code", "state"), [
    (-26, AllocState.OUT_OF_MEMORY), (-27, AllocState.OUT_OF_MEMORY),
    (-20, AllocState.NODE_FAIL), (-14, AllocState.NODE_FAIL), (265, AllocState.FAILED),
    (-1, AllocState.FAILED), (0, AllocState.COMPLETED),
])
def test_exit_status_meanings(code: int, state: AllocState) -> None:
    """OpenPBS's JOB_EXEC_* codes (src/include/job.h) and 256 + signal."""
    from candle.schedulers.pbs.states import translate

    job = json.loads(sample("finished_exit3.json"))["Jobs"]["13.vm"]
    job["Exit_status"] = code
    job["comment"] = "Job run at Sat Nov 21 at 22:37 on (vm:ncpus=1)"
    assert translate(job) is state
