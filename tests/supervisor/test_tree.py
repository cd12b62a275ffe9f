"""A leave-out tree (issue 21) under the real `candle run`, with a user's training function
(fast, no TensorFlow): the supervisor starts a node only once its parent is done, hands the
child its parent's folder and its node's design, and a SIGKILLed tree continues where it
was, its finished nodes never run again. P1B3's weights inheritance is tested with real
training in tests/benchmarks/test_p1b3_designs.py and tests/supervisor/test_tree_p1b3.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from candle.plan.jobs import iter_jobs
from candle.spec import load_sweep
from candle.store import RunStore
from tests.conftest import ROOT, candle_cmd, write

MODEL = '''
import json
import os
import time


def objective(params):
    """Writes what it was given; waits for ``gate`` where told (the kill test)."""
    job_dir = params["job_dir"]
    node = ".".join(map(str, params["design"]["node"]))
    started = time.time()
    failed_before = os.path.join(params.get("fail_once") or job_dir, "failed-" + node)
    if params.get("fail_once") and node == "1" and not os.path.exists(failed_before):
        open(failed_before, "w").close()
        raise RuntimeError("node 1 fails its first attempt")
    if params["gate"] and node.count(".") == 1 and not params.get("init_weights") is None:
        open(os.path.join(params["gate"], "waiting-" + os.path.basename(job_dir)), "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(params["gate"], "go")):
            if time.monotonic() > deadline:
                raise RuntimeError("the test never opened the gate")
            time.sleep(0.02)
    with open(os.path.join(job_dir, "weights.txt"), "w") as handle:
        handle.write(node)  # what a child starts from: its parent's "weights"
    inherited = None
    if params.get("init_weights"):
        with open(os.path.join(params["init_weights"], "weights.txt")) as handle:
            inherited = handle.read()
    with open(params["ledger"], "a") as ledger:
        ledger.write(json.dumps({"job": os.path.basename(job_dir), "node": node,
                                 "started": started, "ended": time.time(),
                                 "epochs": params["epochs"], "inherited": inherited,
                                 "design": params["design"]}) + "\\n")
    return {"val_loss": 1.0 / (1 + node.count(".")) + params["x"]}
'''


def tree_sweep(tmp_path: Path, *, baseline: bool = False, gate: str = "",
               schedule: str = "linear", replicas: int = 1, fail_once: str = "") -> Path:
    write(tmp_path / "treemodel.py", MODEL)
    doc: dict[str, Any] = {
        "name": "tree", "benchmark": "treemodel:objective",
        "params": {"ledger": str(tmp_path / "ledger.jsonl"), "gate": gate, "epochs": 4,
                   "fail_once": fail_once},
        "search": {"method": "list", "points": [{"x": 0.0}], "metric": "val_loss"},
        "cv": {"seed": 3, "holdout": 0.2},
        "stages": {"depth": 2, "children": 2, "split": "cell_drug", "epochs": schedule,
                   "baseline": baseline},
        "resources": {"scheduler": "local", "max_concurrent": 2},
        "store": "runs", "retries": 0,
    }
    if replicas > 1:
        doc["uq"] = {"replicas": replicas}
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(doc))
    return path


def kill_and_wait(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone (reaped by whoever inherited it)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():
        status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(
            f"/proc/{pid}/stat").exists() else "X"
        if status in ("Z", "X"):
            return  # dead; its parent has not reaped it yet
        assert time.monotonic() < deadline, f"process {pid} outlived SIGKILL"
        time.sleep(0.02)


def ledger(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]


def test_the_plan_lists_parents_first_with_stage_epochs_and_baselines(tmp_path: Path) -> None:
    sweep = load_sweep(tree_sweep(tmp_path, baseline=True, replicas=2))
    jobs = list(iter_jobs(sweep))
    # 2 + 4 nodes, 4 baselines below stage 1, x 2 replicas
    assert len(jobs) == (2 + 4 + 4) * 2
    seen: set[str] = set()
    by_id = {job.id: job for job in jobs}
    for job in jobs:
        if job.parent is not None:
            assert job.parent in seen  # a parent always comes first
            parent = by_id[job.parent]
            assert job.node is not None and job.node.startswith(f"{parent.node}.")
            assert parent.replica == job.replica
        seen.add(job.id)
    # linear: stage 1 of 2 keeps 4 epochs, stage 2 half of them
    assert {j.params["epochs"] for j in jobs if j.stage == 1} == {4}
    assert {j.params["epochs"] for j in jobs if j.stage == 2} == {2}
    baselines = [j for j in jobs if j.baseline]
    assert len(baselines) == 8 and all(j.parent is None and j.stage == 2 for j in baselines)
    assert len({j.id for j in jobs}) == len(jobs)
    # the same sweep plans the same ids; another split kind, other ids
    assert [j.id for j in iter_jobs(load_sweep(tree_sweep(tmp_path, baseline=True,
                                                          replicas=2)))] == [j.id for j in jobs]


@pytest.mark.slow
def test_a_tree_runs_parents_first_and_hands_each_child_its_parent(tmp_path: Path) -> None:
    path = tree_sweep(tmp_path, baseline=True)
    done = subprocess.run(candle_cmd("run", str(path)), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    store = RunStore(tmp_path / "runs" / "tree")
    jobs = {job.id: job for job in store.jobs()}
    rows = {row["job"]: row for row in ledger(tmp_path)}
    assert set(rows) == set(jobs)
    for job_id, job in jobs.items():
        row, result = rows[job_id], store.result(job_id)
        assert result is not None and result["status"] == "done"
        assert result["tree_node"] == job.node and result["stage"] == job.stage
        assert result["init_from"] == job.parent and result["baseline"] == job.baseline
        design = row["design"]
        assert design["node"] == [int(p) for p in (job.node or "").split(".")]
        assert design["children"] == 2 and design["split"] == "cell_drug"
        assert design["holdout"] == 0.2 and design["seed"] == 3
        if job.parent is not None:
            parent = rows[job.parent]
            assert row["started"] >= parent["ended"]  # the parent was done first
            assert row["inherited"] == parent["node"]  # its folder, its "weights"
        else:
            assert row["inherited"] is None  # stage 1 and baselines: from scratch
    assert sum(1 for job in jobs.values() if job.baseline) == 4


@pytest.mark.slow
def test_a_sigkilled_tree_continues_where_it_was(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    path = tree_sweep(tmp_path, gate=str(gate))
    proc = subprocess.Popen(candle_cmd("run", str(path)), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(gate.glob("waiting-*")):  # a stage-2 child is running
            assert proc.poll() is None and time.monotonic() < deadline, "no child started"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the supervisor, its worker, mid-tree
        proc.wait(timeout=60)
    store = RunStore(tmp_path / "runs" / "tree")
    # ...and its running jobs (each in its own session), as a lost node would take them
    pids = [json.loads(marker.read_text())["pid"]
            for marker in (store.root / "jobs").glob("*/running.json")]
    assert pids
    for pid in pids:
        kill_and_wait(int(pid))
    before = {row["job"] for row in ledger(tmp_path)}
    firsts = {job.id for job in store.jobs() if job.stage == 1}
    assert firsts <= before and len(before) < 6  # stage 1 done, the tree not
    (gate / "go").touch()
    again = subprocess.run(candle_cmd("run", str(path)), cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} already done" in again.stdout, again.stdout
    rows = ledger(tmp_path)
    assert len(rows) == 6 and len({row["job"] for row in rows}) == 6  # none ran twice
    ends = {row["job"]: row["ended"] for row in rows}
    for job in store.jobs():
        assert store.result(job.id)["status"] == "done"  # type: ignore[index]
        if job.parent is not None:
            started = next(row["started"] for row in rows if row["job"] == job.id)
            assert started >= ends[job.parent]


@pytest.mark.slow
def test_a_failed_parent_leaves_its_subtree_for_the_next_run(tmp_path: Path) -> None:
    """Node 1 fails (no retries): its children are not run, and the run says so in one
    line; node 2's subtree still runs. `candle run` again runs node 1, then its children."""
    (tmp_path / "fails").mkdir()
    path = tree_sweep(tmp_path, fail_once=str(tmp_path / "fails"))
    first = subprocess.run(candle_cmd("run", str(path)), cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "(tree node 1) did not finish: its 2 descendant node(s) are not run" in first.stderr
    assert sorted(row["node"] for row in ledger(tmp_path)) == ["2", "2.1", "2.2"]
    again = subprocess.run(candle_cmd("run", str(path)), cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 done, 0 failed, 3 already done" in again.stdout, again.stdout
    assert sorted(row["node"] for row in ledger(tmp_path)) == ["1", "1.1", "1.2", "2", "2.1",
                                                               "2.2"]
