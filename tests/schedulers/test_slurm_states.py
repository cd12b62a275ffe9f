"""sacct/squeue parsing (arrays included), the state table, and the command runner's
retry that never submits twice."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from candle.schedulers._base import AllocState
from candle.schedulers._command import Retry, SchedulerError, run_cmd
from candle.schedulers.slurm.allocation import tasks_per_node
from candle.schedulers.slurm.states import expand_job_id, parse_table, translate

SACCT = """\
101|COMPLETED
102|FAILED
103|TIMEOUT
104|CANCELLED by 0
105_0|COMPLETED
105_1|RUNNING
105_[2-4,7%2]|PENDING
106|OUT_OF_MEMORY
107|NODE_FAIL
108|PREEMPTED
109|REQUEUED
110|COMPLETING
"""


def test_sacct_table_with_arrays() -> None:
    states = parse_table(SACCT)
    assert states["101"] is AllocState.COMPLETED
    assert states["103"] is AllocState.TIMEOUT and states["103"].terminal
    assert states["104"] is AllocState.CANCELLED
    assert [states[f"105_{i}"] for i in (0, 1, 2, 3, 4, 7)] == [
        AllocState.COMPLETED, AllocState.RUNNING, *[AllocState.PENDING] * 4]
    assert "105_5" not in states
    assert states["106"] is AllocState.OUT_OF_MEMORY
    assert states["109"] is AllocState.PENDING and not states["109"].terminal
    assert states["110"] is AllocState.RUNNING


def test_unknown_state_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert translate("WIBBLING") is AllocState.UNKNOWN
    assert "WIBBLING" in caplog.text
    assert not AllocState.UNKNOWN.terminal


def test_expand_ids() -> None:
    assert expand_job_id("7") == ["7"]
    assert expand_job_id("7_3") == ["7_3"]
    assert expand_job_id("7_[0-2]") == ["7_0", "7_1", "7_2"]


def test_tasks_per_node() -> None:
    assert tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert tasks_per_node("4") == [4]
    with pytest.raises(ValueError):
        tasks_per_node("two")


def fake_command(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake"
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_transient_errors_are_retried(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    cmd = fake_command(tmp_path, f'''
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}
if [ $n -lt 3 ]; then echo "sbatch: error: Socket timed out on send/recv" >&2; exit 1; fi
echo 4242
''')
    sleeps: list[float] = []
    out = run_cmd([str(cmd)], retry=Retry(attempts=4, first_delay=1.0), sleep=sleeps.append)
    assert out.strip() == "4242"
    assert counter.read_text().strip() == "3"
    assert sleeps == [1.0, 2.0]  # exponential backoff


def test_permanent_errors_raise_at_once_with_details(tmp_path: Path) -> None:
    cmd = fake_command(tmp_path, 'echo "sbatch: error: Invalid account" >&2; exit 1\n')
    with pytest.raises(SchedulerError) as info:
        run_cmd([str(cmd)], sleep=lambda s: None)
    assert info.value.code == 1 and "Invalid account" in str(info.value)
    assert not info.value.transient


def test_a_lost_reply_is_not_submitted_twice(tmp_path: Path) -> None:
    """The first sbatch reached the controller but timed out on the reply: the retry asks
    the queue for our tag first and finds the job instead of submitting another."""
    submitted = tmp_path / "submitted"
    cmd = fake_command(tmp_path, f'''
echo x >> {submitted}
echo "sbatch: error: Socket timed out on send/recv operation" >&2; exit 1
''')
    out = run_cmd([str(cmd)], sleep=lambda s: None, before_retry=lambda exc: "777")
    assert out == "777"
    assert submitted.read_text().count("x") == 1


def test_a_command_that_hangs_times_out(tmp_path: Path) -> None:
    cmd = fake_command(tmp_path, "sleep 30\n")
    with pytest.raises(SchedulerError) as info:
        run_cmd([str(cmd)], retry=Retry(attempts=1, timeout=0.5), sleep=lambda s: None)
    assert info.value.transient and "timed out" in str(info.value)
