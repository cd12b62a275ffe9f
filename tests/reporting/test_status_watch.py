"""`candle status --watch`: refreshes until no job is pending or running, then prints the
final table and exits 0; Ctrl-C stops it with exit 0 too. Stdout is a pipe here, so the
watch prints one line per change of the counts and the final table."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from candle.plan import iter_jobs
from candle.spec import load_sweep
from candle.state import JobState
from candle.store import RunStore
from candle.store.atomic import atomic_write_json
from candle.supervisor.run import run_meta
from tests.conftest import ROOT, candle_cmd, write

STATES = [s.value for s in JobState]

GATED_MODEL = '''
import os
import time


def objective(params):
    deadline = time.time() + 60
    while not os.path.exists(params["gate"]) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    return {"val_loss": params["x"] * 0.1}
'''


def final_counts(out: str) -> dict[str, int]:
    """The counts row of the last table printed (header: the JobState values, total)."""
    lines = out.splitlines()
    header = max(i for i, line in enumerate(lines) if "pending" in line and "┃" in line)
    row = next(line for line in lines[header + 1:] if line.startswith("│"))
    values = [int(cell) for cell in row.strip("│ ").split("│")]
    return dict(zip([*STATES, "total"], values, strict=True))


def progress_lines(out: str) -> list[dict[str, int]]:
    """The one-line-per-change records: 'HH:MM:SS name: pending 3, running 2, ...'."""
    found = []
    for line in out.splitlines():
        if re.match(r"\d\d:\d\d:\d\d \S+: pending \d+", line):
            found.append({k: int(v) for k, v in re.findall(r"([a-z]+) (\d+)", line)})
    return found


def written_store(tmp_path: Path, results: dict[int, str]) -> RunStore:
    """A planned 4-job run; ``results`` gives some points a finished status."""
    sweep = load_sweep(write(tmp_path / "s.yaml", """
        name: w
        benchmark: "m:f"
        search: {method: grid, space: {x: [0, 1, 2, 3]}, metric: val_loss}
    """))
    store = RunStore(sweep.run_dir)
    jobs = list(iter_jobs(sweep))
    store.initialise(sweep.text, run_meta(sweep), jobs)
    for job in jobs:
        status = results.get(job.point_params["x"])
        if status == "done":
            store.write_result(job.id, {"status": "done", "metrics": {"val_loss": 0.1}})
        elif status == "failed":
            store.write_result(job.id, {"status": "failed", "attempt": 2, "metrics": {},
                                        "error": "ValueError: x=3 is cursed"})
    return store


def test_watch_on_a_finished_run_prints_the_final_table_and_exits(tmp_path: Path,
                                                                  cli: Any) -> None:
    store = written_store(tmp_path, {0: "done", 1: "done", 2: "done", 3: "failed"})
    result = cli("status", str(store.root), "--watch", "--interval", "0.2")
    assert result.code == 0, result.err
    assert progress_lines(result.out) == []  # nothing to follow: the final table only
    assert "w: 3/4 done (75%), finished" in result.out
    assert final_counts(result.out) == {"pending": 0, "running": 0, "done": 3, "failed": 1,
                                        "pruned": 0, "interrupted": 0, "lost": 0, "timeout": 0,
                                        "total": 4}
    assert "ValueError: x=3 is cursed" in result.out
    assert f"candle status {store.root}" in result.out


def test_watch_ends_when_the_only_running_job_is_lost(tmp_path: Path) -> None:
    """An allocation on another node died hard: its job's marker stays, its supervisor's
    lease is no longer renewed. The watch shows the job lost and ends (it would wait for
    ever on a marker it trusted)."""
    store = written_store(tmp_path, {0: "done", 1: "done", 2: "done"})
    job = next(j for j in store.jobs() if j.point_params["x"] == 3)
    owner = "node17-4242-0a1b2c"
    atomic_write_json(store.job_dir(job.id) / "running.json",
                      {"pid": 4242, "host": "node17", "attempt": 1, "owner": owner})
    atomic_write_json(store.root / "leases" / f"{owner}.json",
                      {"owner": owner, "host": "node17", "pid": 4242,
                       "renewed": time.time() - 1000, "expires": time.time() - 820})
    proc = subprocess.run(candle_cmd("status", str(store.root), "--watch", "--interval", "0.1"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert final_counts(proc.stdout) == {"pending": 0, "running": 0, "done": 3, "failed": 0,
                                         "pruned": 0, "interrupted": 0, "lost": 1, "timeout": 0,
                                         "total": 4}
    assert f"lost {job.id}" in proc.stdout


def test_watch_refuses_json_and_non_run_directories(tmp_path: Path, cli: Any) -> None:
    store = written_store(tmp_path, {})
    result = cli("status", str(store.root), "--watch", "--format", "json")
    assert result.code == 2
    assert result.err.strip() == "--watch draws a table; use --format json without --watch"
    result = cli("status", str(tmp_path / "nowhere"), "--watch")
    assert result.code == 2
    assert result.err.strip() == (f"{tmp_path / 'nowhere'}: not a candle run directory "
                                  "(no plan.jsonl / run.json)")


class LineReader:
    """Lines of a process's stdout, as they come, without blocking the test forever."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, predicate: Any, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, "output ended:\n" + "".join(self.seen)
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self, timeout: float = 60) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return "".join(self.seen)
            self.seen.append(line)


def test_ctrl_c_stops_watching_with_exit_0(tmp_path: Path) -> None:
    store = written_store(tmp_path, {0: "done"})  # three jobs pending: it would watch on
    proc = subprocess.Popen(candle_cmd("status", str(store.root), "--watch", "--interval",
                                       "0.1"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        reader = LineReader(proc)
        first = reader.until(lambda line: "pending" in line)
        assert "pending 3, running 0, done 1" in first
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in err and "stopped watching" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_watch_follows_a_live_run_to_its_end(tmp_path: Path) -> None:
    """8 jobs, 2 at a time, each held at a gate until the watch has shown them running,
    then ~0.5 s each: the watch sees the run move and exits by itself when it ends."""
    write(tmp_path / "model.py", GATED_MODEL)
    gate = tmp_path / "gate"
    doc = {"name": "live", "benchmark": "model:objective", "params": {"gate": str(gate)},
           "search": {"method": "grid", "space": {"x": list(range(8))},
                      "metric": "val_loss"},
           "resources": {"scheduler": "local", "max_concurrent": 2}, "store": "runs"}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps(doc))
    run = subprocess.Popen(candle_cmd("run", str(sweep)), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    watch: subprocess.Popen[str] | None = None
    try:
        store = RunStore(tmp_path / "runs" / "live")
        deadline = time.monotonic() + 60
        while not store.exists():  # the run directory is written when the run is planned
            assert run.poll() is None and time.monotonic() < deadline, run.stderr
            time.sleep(0.02)
        watch = subprocess.Popen(candle_cmd("status", str(store.root), "--watch",
                                            "--interval", "0.2"),
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        reader = LineReader(watch)
        reader.until(lambda line: "running 2," in line)  # held at the gate: seen running
        gate.touch()
        assert watch.wait(timeout=120) == 0
        out = reader.rest()
        assert run.wait(timeout=120) == 0
    finally:
        gate.touch()
        for proc in (run, watch):
            if proc is not None and proc.poll() is None:
                proc.kill()
    records = progress_lines(out)
    assert records[0]["done"] == 0 and any(r["running"] == 2 for r in records)
    assert records[-1] == {"pending": 0, "running": 0, "done": 8, "failed": 0, "pruned": 0,
                           "interrupted": 0, "lost": 0, "timeout": 0}
    done = [r["done"] for r in records]
    assert done == sorted(done)  # it followed the run: done only grows
    assert len(set(done)) >= 3  # and saw it in between, not only at the start and the end
    assert "live: 8/8 done (100%), finished" in out
    assert final_counts(out) == {"pending": 0, "running": 0, "done": 8, "failed": 0,
                                 "pruned": 0, "interrupted": 0, "lost": 0, "timeout": 0,
                                 "total": 8}


@pytest.mark.parametrize("interval", ["0", "-1"])
def test_watch_interval_must_be_positive(tmp_path: Path, cli: Any, interval: str) -> None:
    store = written_store(tmp_path, {})
    result = cli("status", str(store.root), "--watch", "--interval", interval)
    assert result.code == 2
    assert "--interval" in result.err
