"""The supervisor against models that crash, fail once, or are killed with the supervisor.

These start real subprocesses (the real `candle run` and `python -m candle.job`) with cheap
user models, so they exercise the process handling, not training."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from candle.store import RunStore
from tests.conftest import ROOT, candle_cmd, write

pytestmark = pytest.mark.slow

MODEL = '''
import os, signal, time
from pathlib import Path

def objective(params):
    job_dir = Path(params["job_dir"])
    calls = job_dir / "calls"
    n = int(calls.read_text()) + 1 if calls.exists() else 1
    calls.write_text(str(n))
    mode = params.get("mode", "ok")
    if mode == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "oom":
        os._exit(137)
    if mode == "raise":
        raise RuntimeError("model exploded on purpose")
    if mode == "flaky" and n == 1:
        raise RuntimeError("first attempt fails")
    time.sleep(float(params.get("sleep", 0)))
    with open(params["ledger"], "a") as f:
        f.write(params["job_dir"] + "\\n")
    return {"val_loss": (params["x"] - 0.3) ** 2}
'''


def make_sweep(tmp_path: Path, points: list[dict[str, object]], retries: int = 1,
               concurrent: int = 2) -> Path:
    write(tmp_path / "model.py", MODEL)
    ledger = tmp_path / "ledger.txt"
    pts = [{**p, "ledger": str(ledger)} for p in points]
    sweep = {
        "name": "chaos", "benchmark": "model:objective",
        "search": {"method": "list", "points": pts, "metric": "val_loss"},
        "resources": {"scheduler": "local", "max_concurrent": concurrent},
        "retries": retries, "store": "runs",
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(sweep))  # JSON is YAML
    return path


def run(sweep: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(candle_cmd("run", str(sweep)), capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def results(tmp_path: Path) -> dict[str, dict[str, object]]:
    store = RunStore(tmp_path / "runs" / "chaos")
    return {j.id: store.result(j.id) or {} for j in store.jobs()}


def test_hard_crashes_fail_only_their_jobs(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    points = [{"x": 0.1}, {"x": 0.2, "mode": "segfault"}, {"x": 0.3, "mode": "oom"},
              {"x": 0.4, "mode": "raise"}, {"x": 0.5}]
    proc = run(make_sweep(tmp_path, points, retries=1))
    assert proc.returncode == 1, proc.stderr
    assert "3 job(s) failed after retries" in proc.stderr
    by_x = {}
    store = RunStore(tmp_path / "runs" / "chaos")
    for job in store.jobs():
        by_x[job.params["x"]] = (store.result(job.id), store.previous_attempts(job.id))
    assert by_x[0.1][0]["status"] == "done" and by_x[0.5][0]["status"] == "done"
    assert by_x[0.2][0]["error"] == "killed by signal SIGSEGV"
    assert by_x[0.3][0]["exit_code"] == 137
    assert "model exploded on purpose" in by_x[0.4][0]["error"]
    for x in (0.2, 0.3, 0.4):  # retried once: the first failure is kept in attempts.jsonl
        assert by_x[x][0]["attempt"] == 2 and by_x[x][1] == 1
    status = cli("status", str(tmp_path / "runs" / "chaos"))
    assert "done 2, failed 3" in status.out
    assert "SIGSEGV" in status.out and "model exploded on purpose" in status.out


def test_flaky_job_succeeds_on_retry(tmp_path: Path) -> None:
    proc = run(make_sweep(tmp_path, [{"x": 0.1, "mode": "flaky"}], retries=1))
    assert proc.returncode == 0, proc.stderr
    (result,) = results(tmp_path).values()
    assert result["status"] == "done" and result["attempt"] == 2


def test_no_retries_means_one_attempt(tmp_path: Path) -> None:
    proc = run(make_sweep(tmp_path, [{"x": 0.1, "mode": "flaky"}], retries=0))
    assert proc.returncode == 1
    (result,) = results(tmp_path).values()
    assert result["status"] == "failed" and result["attempt"] == 1
    # running again re-runs the failed job, which now succeeds (its second call)
    assert run(make_sweep(tmp_path, [{"x": 0.1, "mode": "flaky"}], retries=0)).returncode == 0
    (result,) = results(tmp_path).values()
    assert result["status"] == "done" and result["attempt"] == 2


def _start_and_wait_for_results(sweep: Path, tmp_path: Path, at_least: int
                                ) -> subprocess.Popen[str]:
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    jobs_dir = tmp_path / "runs" / "chaos" / "jobs"
    while time.time() < deadline:
        if jobs_dir.exists() and len(list(jobs_dir.glob("*/result.json"))) >= at_least:
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the sweep never produced results")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_with_every_result_exactly_once(tmp_path: Path, sig: int) -> None:
    points = [{"x": i / 10, "sleep": 0.6} for i in range(8)]
    sweep = make_sweep(tmp_path, points)
    proc = _start_and_wait_for_results(sweep, tmp_path, at_least=2)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130)
    before = {k: v for k, v in results(tmp_path).items() if v.get("status") == "done"}
    assert 2 <= len(before) < 8
    time.sleep(1.0)  # an orphaned job would finish in this time and write a second time
    finished = run(sweep)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(before)} already done" in finished.stdout
    after = results(tmp_path)
    assert len(after) == 8 and all(r["status"] == "done" for r in after.values())
    for job_id, result in before.items():  # finished work was not redone
        assert after[job_id]["ended"] == result["ended"]
    ledger = (tmp_path / "ledger.txt").read_text().splitlines()
    assert sorted(set(ledger)) == sorted(ledger), "a job completed twice"
    assert len(ledger) == 8
    assert not list((tmp_path / "runs" / "chaos" / "jobs").glob("*/running.json"))


def test_second_supervisor_on_the_same_run_is_refused(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, [{"x": i / 10, "sleep": 1.0} for i in range(4)])
    first = _start_and_wait_for_results(sweep, tmp_path, at_least=0)
    try:
        time.sleep(1.0)
        second = run(sweep)
        assert second.returncode == 2
        assert "another candle run is active on this run" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0
