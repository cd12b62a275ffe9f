"""The backend test-suite every batch scheduler passes, run twice:

- ``slurm``: a REAL Slurm 22.05 (scripts/slurm/start-local-slurm.sh; sacct via slurmdbd).
- ``pbs``: the offline PBS DOUBLE of tests/schedulers/pbs_double/ — fake qsub/qstat/qdel
  that run the scripts on this machine and print documents shaped like real OpenPBS
  23.06 output. No PBS server can be installed here (not in Debian, not on PyPI), so this
  checks candle's PBS logic end to end against the double, not against PBS itself; the
  parsing is checked against real OpenPBS output in test_pbs_states.py.

Each test drives the real `candle` CLI: submit, follow, status, cancel, no double
submission, a submitter killed mid-submission, arrays with a throttle, a walltime that
runs out (drain at the lead, continuation after the allocation, resume)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from candle.schedulers.batch.backend import backend_for
from candle.store import RunStore
from tests.chaos.test_walltime import EPOCH_MODEL
from tests.conftest import ROOT, run_candle, write

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DOUBLE = Path(__file__).parent / "pbs_double"
MODEL = '''
import time

def objective(params):
    time.sleep(float(params.get("sleep", 0)))
    return {"val_loss": (params["x"] - 0.3) ** 2}
'''
# The double's one host, as a PBS site: Open MPI without PBS integration (mpiexec --host).
PBS_DOUBLE_SITE = """
scheduler: pbs
description: the PBS double (tests/schedulers/pbs_double), one host
queue: workq
cores_per_node: 2
mpi: openmpi
env:
  OMPI_ALLOW_RUN_AS_ROOT: "1"
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1"
  TF_CPP_MIN_LOG_LEVEL: "2"
"""


@dataclass(frozen=True)
class Cluster:
    scheduler: str  # slurm | pbs
    site: Path

    @property
    def folder(self) -> str:
        return backend_for(self.scheduler).NAME

    def records(self, run_dir: Path) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = json.loads(
            (run_dir / self.folder / "submissions.json").read_text())
        return records

    def queued(self, run_dir: Path) -> list[str]:
        """This run's jobs still queued or running, found by their tag."""
        from candle.schedulers.batch.submit import run_id_of

        tagged = backend_for(self.scheduler).tagged_jobs() or {}
        prefix = f"candle-run:{run_id_of(run_dir)}:"
        return [job_id for tag, job_id in tagged.items() if tag.startswith(prefix)]


@pytest.fixture(params=["slurm", "pbs"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    if request.param == "slurm":
        request.getfixturevalue("live_slurm")
        yield Cluster("slurm", ROOT / "configs" / "local-slurm.yaml")
        return
    home = tmp_path / "pbs-double-home"
    home.mkdir()
    # the double's commands, then this venv's python3 for their shebang (not a slow shim)
    monkeypatch.setenv("PATH", os.pathsep.join(
        [str(DOUBLE), str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("PBS_DOUBLE_HOME", str(home))
    monkeypatch.setenv("PBS_DOUBLE_KILL_DELAY", "2")
    # One shared 2-core node, as the site says (cores_per_node: 2), whatever this machine has.
    monkeypatch.setenv("PBS_DOUBLE_NCPUS", "2")
    yield Cluster("pbs", write(tmp_path / "pbs-double.yaml", PBS_DOUBLE_SITE))
    backend = backend_for("pbs")  # leave nothing running in the double
    backend.cancel(list((backend.tagged_jobs() or {}).values()))


def sweep_file(cluster: Cluster, tmp_path: Path, name: str, **over: Any) -> Path:
    if not (tmp_path / "model.py").exists():  # a test may have written its own
        write(tmp_path / "model.py", MODEL)
    doc: dict[str, Any] = {
        "name": name, "benchmark": "model:objective",
        "search": {"method": "list", "points": [{"x": 0.1}], "metric": "val_loss"},
        "resources": {"scheduler": cluster.scheduler, "site": str(cluster.site),
                      "walltime": "00:05:00"},
        "retries": 0, "store": str(tmp_path / "runs"),
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(doc))
    return path


def results(store: RunStore) -> list[dict[str, Any]]:
    return [store.result(job.id) or {} for job in store.jobs()]


def status_json(run_dir: Path) -> dict[str, Any]:
    proc = run_candle("status", str(run_dir), "--format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def peak_concurrency(done: list[dict[str, Any]]) -> int:
    events = sorted([(r["started"], 1) for r in done] + [(r["ended"], -1) for r in done])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_pack_mode_runs_every_job_and_reports(cluster: Cluster, tmp_path: Path) -> None:
    points = [{"x": i / 10} for i in range(4)]
    path = sweep_file(cluster, tmp_path, "pack", search={"points": points})
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "pack")
    assert [r["status"] for r in results(store)] == ["done"] * 4
    (record,) = cluster.records(store.root)
    assert record["kind"] == "pack" and record["job_id"]
    status = status_json(store.root)
    assert status["counts"]["done"] == 4
    assert status["batch"] == [{"job_id": record["job_id"], "kind": "pack", "count": 4,
                                "states": {"COMPLETED": 1}}]
    again = run_candle("run", str(path), timeout=120)
    assert again.returncode == 0 and "every job is already done" in again.stdout


def test_array_mode_with_throttle(cluster: Cluster, tmp_path: Path) -> None:
    """8 one-rank jobs, at most 2 at once: each task asks for one core, so on 2-core nodes
    two run side by side (a task that asked for the whole node ran alone on PBS)."""
    points = [{"x": i / 10, "sleep": 3} for i in range(8)]
    path = sweep_file(cluster, tmp_path, "array", search={"points": points},
                      resources={"mode": "array", "array_throttle": 2})
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "array")
    done = results(store)
    assert len(done) == 8 and all(r["status"] == "done" for r in done)
    (record,) = cluster.records(store.root)
    assert record["kind"] == "array" and record["count"] == 8  # one submission, not 8
    assert peak_concurrency(done) == 2
    assert status_json(store.root)["batch"][0]["states"] == {"COMPLETED": 8}


def test_a_failing_array_task_is_named_in_status(cluster: Cluster, tmp_path: Path) -> None:
    path = sweep_file(cluster, tmp_path, "fails",
                      search={"points": [{"x": 0.1}, {"x": 0.2, "sleep": "not a number"}]},
                      resources={"mode": "array"})
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # The results are final when --wait returns; the accounting (sacct) may lag a moment.
    wait_for(lambda: status_json(tmp_path / "runs" / "fails")["batch"][0]["states"]
             == {"COMPLETED": 1, "FAILED": 1}, 60, "both array tasks in the accounting")
    status = status_json(tmp_path / "runs" / "fails")
    assert status["counts"]["done"] == 1 and status["counts"]["failed"] == 1
    # The failed job, named with its task's scheduler id (--wait's next wave may have
    # given it one more try: then that submission's).
    (note,) = status["notes"].values()
    ids = [r["job_id"] for r in cluster.records(tmp_path / "runs" / "fails")]
    assert note.startswith("FAILED (") and any(i.split("[")[0].split(".")[0] in note
                                               for i in ids), (note, ids)


def test_no_double_submission_and_cancel(cluster: Cluster, tmp_path: Path) -> None:
    path = sweep_file(cluster, tmp_path, "cancel", search={"points": [{"x": 0.1, "sleep": 600}]})
    first = run_candle("run", str(path), timeout=120)
    assert first.returncode == 0, first.stderr
    store = RunStore(tmp_path / "runs" / "cancel")
    wait_for(lambda: status_json(store.root)["batch"][0]["states"].get("RUNNING") == 1, 120,
             "the allocation to start")
    again = run_candle("run", str(path), timeout=120)
    assert again.returncode == 0 and "already submitted" in again.stdout
    assert len(cluster.records(store.root)) == 1
    cancelled = run_candle("cancel", str(store.root), timeout=120)
    assert cancelled.returncode == 0 and "cancelled 1" in cancelled.stdout
    wait_for(lambda: status_json(store.root)["batch"][0]["states"].get("CANCELLED") == 1, 120,
             "CANCELLED")
    assert status_json(store.root)["counts"]["done"] == 0
    wait_for(lambda: cluster.queued(store.root) == [], 60, "the job to leave the queue")


def test_a_submitter_killed_during_submission_never_submits_twice(
        cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record is written before sbatch/qsub and the id after; a `candle run` killed in
    between leaves a record without an id, which the next one settles by the job's tag.
    A record lost altogether is rebuilt the same way (the job is adopted)."""
    from candle.schedulers.batch.follow import run_on_cluster
    from candle.spec import load_sweep

    path = sweep_file(cluster, tmp_path, "crash", search={"points": [{"x": 0.1, "sleep": 600}]})
    backend = backend_for(cluster.scheduler)
    real_submit = backend.submit

    def submit_then_die(script: Path, tag: str, after: str = "", ok: bool = False) -> str:
        real_submit(script, tag, after)
        raise KeyboardInterrupt  # killed after the submission, before the id was written

    monkeypatch.setattr(backend, "submit", submit_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_on_cluster(load_sweep(path), dry_run=False, wait=False)
    monkeypatch.setattr(backend, "submit", real_submit)
    store = RunStore(tmp_path / "runs" / "crash")
    (record,) = cluster.records(store.root)
    assert record["job_id"] == ""

    again = run_candle("run", str(path), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already submitted" in again.stdout
    (record,) = cluster.records(store.root)
    assert record["job_id"] and cluster.queued(store.root) == [record["job_id"]]
    (store.root / cluster.folder / "submissions.json").unlink()  # lost altogether
    third = run_candle("run", str(path), timeout=120)
    assert "already submitted" in third.stdout and record["job_id"] in third.stdout
    (adopted,) = cluster.records(store.root)
    assert adopted["kind"] == "adopted" and adopted["job_id"] == record["job_id"]
    assert cluster.queued(store.root) == [record["job_id"]]  # still one: none twice
    assert run_candle("cancel", str(store.root), timeout=120).returncode == 0


@pytest.mark.parametrize("cluster", ["pbs"], indirect=True)
def test_walltime_drains_continues_and_resumes(cluster: Cluster, tmp_path: Path) -> None:
    """Two jobs of 6 epochs x 8 s in allocations of 50 s that drain 20 s before the end:
    the first allocation checkpoints both (epoch 4 or so) and submits its continuation
    (afterany: itself), which finishes them; no epoch is trained twice. PBS has no warning
    signal, so the drain comes from the supervisor's clock (qstat's stime + walltime).
    Slurm's run of the same story (USR1 from --signal, whose timer ticks once a minute,
    so its allocations are minutes long) is test_slurm_walltime.py."""
    write(tmp_path / "model.py", EPOCH_MODEL)
    path = sweep_file(cluster, tmp_path, "wall",
                      params={"epochs": 6, "epoch_s": 8},
                      search={"points": [{"x": 0}, {"x": 1}]},
                      resources={"walltime": "00:00:50", "signal_lead": 20})
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "wall")
    records = cluster.records(store.root)
    assert [r["kind"] for r in records] == ["pack", "pack"]
    assert records[1]["after"] == records[0]["job_id"]  # the continuation waited for it
    for job in store.jobs():
        result = store.result(job.id) or {}
        assert result["status"] == "done"
        assert result["metrics"]["resumed_from"] > 0  # the second allocation resumed it
        epochs = [int(x) for x in (store.job_dir(job.id) / "epochs.log").read_text().split()]
        assert epochs == [1, 2, 3, 4, 5, 6]  # none twice
    if cluster.scheduler == "pbs":
        script = (store.root / "pbs" / "pack.pbs").read_text()
        assert "#PBS -l walltime=00:00:50" in script and "drains 20 s before" in script


@pytest.mark.parametrize("cluster", ["pbs"], indirect=True)
def test_horovod_ranks_start_through_mpiexec(cluster: Cluster, tmp_path: Path) -> None:
    """NT3 with 2 Horovod ranks per job, started by the PBS backend's mpiexec from the
    hosts in $PBS_NODEFILE (Open MPI flavour: the double's host is this machine)."""
    doc: dict[str, Any] = __import__("yaml").safe_load(
        (ROOT / "workflows" / "nt3_slurm_pack.yaml").read_text())
    doc["store"] = str(tmp_path / "runs")
    doc["params"]["epochs"] = 2
    doc["uq"] = {"replicas": 1}
    doc["resources"] = {"scheduler": "pbs", "site": str(cluster.site), "mode": "pack",
                        "nodes": 1, "ranks_per_job": 2, "walltime": "00:15:00"}
    path = tmp_path / "hvd.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / doc["name"])
    done = results(store)
    assert len(done) == 2 and all(r["status"] == "done" for r in done)
    for result in done:
        assert result["horovod"]["size"] == 2
        log = store.log_path(result["job_id"]).read_text()
        assert "mpiexec -n 2 --host" in log and sys.executable in log


@pytest.mark.parametrize("cluster", ["pbs"], indirect=True)
def test_pbt_and_warm_workers_in_a_pbs_pack_allocation(cluster: Cluster, tmp_path: Path) -> None:
    """Population-based training inside a PBS allocation: the supervisor there plans each
    segment from the lineage, and its 1-rank segments are forked by the node's warm worker
    (one `mpiexec -n 1` on the node, its stdin and stdout the wire); every member reaches
    its last epoch with each decision recorded once. (Slurm: test_slurm_live.py.)"""
    from tests.adaptive.test_pbt import MODEL as PBT_MODEL
    from tests.adaptive.test_pbt import check_lineage

    write(tmp_path / "model.py", PBT_MODEL)
    path = sweep_file(cluster, tmp_path, "pbt", benchmark="model:f", params={"epochs": 6},
                      search={"method": "pbt", "population": 4, "ready": 2,
                              "exploit": {"truncate": 0.25}, "metric": "val_loss",
                              "space": {"lr": {"loguniform": [0.01, 0.9]}}},
                      resources={"mode": "pack"})
    doc = json.loads(path.read_text())
    del doc["search"]["points"]
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "pbt")
    lineage = check_lineage(store.root, 4, 6, 2)
    done = results(store)
    assert all(r["status"] == "done" for r in done)
    assert len(done) == sum(1 for r in lineage if "job_record" in r)  # every segment ran
    worker_logs = list((store.root / "workers").glob("*.log"))
    assert len(worker_logs) == 1  # one worker for the allocation's one node
    for job in store.jobs():
        assert "forked by the warm worker" in store.log_path(job.id).read_text()


def test_a_leave_out_tree_in_array_mode_is_one_array_per_stage_chained_afterok(
        cluster: Cluster, tmp_path: Path) -> None:
    """Issue 21: a depth-2 tree of 2 children in array mode is two arrays, the second
    submitted with afterok on the first (Slurm --dependency, PBS -W depend): it starts
    only once every stage-1 node has succeeded, and each child gets its parent's folder."""
    store = run_cluster_tree(cluster, tmp_path)
    first, second = cluster.records(store.root)
    assert first["count"] == 2 and not first["after"]
    assert second["count"] == 4 and second["after"] == first["job_id"] and second["after_ok"]


def run_cluster_tree(cluster: Cluster, tmp_path: Path, mode: str = "array",
                   **params: Any) -> RunStore:
    """A depth-2, 2-children tree of the tree test's model (array mode unless told),
    `candle run --wait` to its end: every node done, each child after its parent, from its
    folder."""
    from tests.supervisor.test_tree import MODEL as TREE_MODEL
    from tests.supervisor.test_tree import ledger

    write(tmp_path / "treemodel.py", TREE_MODEL)
    path = sweep_file(cluster, tmp_path, "tree", benchmark="treemodel:objective",
                      params={"ledger": str(tmp_path / "ledger.jsonl"), "gate": "",
                              "epochs": 2, **params},
                      stages={"depth": 2, "children": 2, "split": "cell"},
                      resources={"mode": mode})
    proc = run_candle("run", str(path), "--wait", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "tree")
    assert [r["status"] for r in results(store)] == ["done"] * 6
    rows = {row["job"]: row for row in ledger(tmp_path)}
    for job in store.jobs():
        if job.parent is not None:
            assert rows[job.id]["started"] >= rows[job.parent]["ended"]
            assert rows[job.id]["inherited"] == rows[job.parent]["node"]
    return store


def test_a_failed_stage_cancels_the_next_and_the_next_wave_resumes_the_tree(
        cluster: Cluster, tmp_path: Path) -> None:
    """Node 1 fails its first attempt: the stage-2 array, waiting on afterok, is cancelled
    by the scheduler (Slurm --kill-on-invalid-dep, PBS deletes it) rather than left pending;
    --wait's next wave runs node 1 again and then every child, each after its parent."""
    (tmp_path / "fails").mkdir()
    store = run_cluster_tree(cluster, tmp_path, fail_once=str(tmp_path / "fails"))
    records = cluster.records(store.root)
    assert [r["count"] for r in records] == [2, 4, 3, 2]  # wave 2: node 1, then its children
    assert records[1]["after_ok"] and records[3]["after"] == records[2]["job_id"]
    assert not records[2]["after"]  # node 1 again, with node 2's children (parent done)


def test_a_leave_out_tree_in_a_pack_allocation_runs_parents_first(
        cluster: Cluster, tmp_path: Path) -> None:
    """Pack mode: one allocation, whose supervisor orders the tree (candle.supervisor.tree)."""
    store = run_cluster_tree(cluster, tmp_path, mode="pack")
    (record,) = cluster.records(store.root)
    assert record["kind"] == "pack" and not record["after"]
