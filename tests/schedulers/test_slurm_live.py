"""Against a REAL Slurm (scripts/slurm/start-local-slurm.sh: 4 emulated nodes, slurmdbd +
MariaDB so sacct works): pack mode with 2-rank Horovod srun steps across nodes, Optuna in
pack and array modes, hostile values. What every backend must do (arrays with a throttle,
no double submission, cancel, a submitter killed mid-sbatch) is in test_backend_suite.py;
walltime, TIMEOUT and requeue in test_slurm_walltime.py. The fixture starts the
cluster when it is not up (root needed) and stops it afterwards if it started it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candle.store import RunStore
from tests.conftest import ROOT, run_candle, write
from tests.schedulers.test_backend_suite import results, status_json

pytestmark = [pytest.mark.slow, pytest.mark.integration]

def test_pack_mode_runs_horovod_steps_across_nodes(live_slurm: None, tmp_path: Path) -> None:
    doc = json.loads(json.dumps(__import__("yaml").safe_load(
        (ROOT / "workflows" / "nt3_slurm_pack.yaml").read_text())))
    doc["store"] = str(tmp_path / "runs")
    doc["params"]["epochs"] = 2
    path = tmp_path / "pack.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / doc["name"])
    done = results(store)
    assert len(done) == 4 and all(r["status"] == "done" for r in done)
    for result in done:
        assert result["horovod"]["size"] == 2
        assert len({r["weights"] for r in result["horovod"]["ranks"]}) == 1
        assert "srun --exact --mpi=pmix -n 2" in store.log_path(result["job_id"]).read_text()
    assert len({r["node"] for r in done}) >= 2, "all jobs ran on one emulated node"
    overlap = any(a["started"] < b["ended"] and b["started"] < a["ended"]
                  for a in done for b in done if a is not b)
    assert overlap, "the allocation ran one job at a time"
    status = status_json(store.root)
    assert status["counts"]["done"] == 4
    assert status["batch"][0]["kind"] == "pack"
    assert status["batch"][0]["states"] == {"COMPLETED": 1}
    summary = run_candle("summary", str(store.root), "--format", "json", timeout=60)
    assert summary.returncode == 0 and json.loads(summary.stdout)
    final_model_on_slurm(store, tmp_path)


def final_model_on_slurm(store: RunStore, tmp_path: Path) -> None:
    """`candle train --from` a Slurm run is a small Slurm sweep of its own (followed to the
    end, then the card); its Horovod-trained members predict on an upstream-format file."""
    out = tmp_path / "model"
    proc = run_candle("train", "--from", str(store.root), "--best", "--replicas", "2",
                      "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    card = json.loads((out / "model.json").read_text())
    assert len(card["members"]) == 2
    final = RunStore(out)
    assert final.manifest().resources.scheduler == "slurm"
    for member in card["members"]:
        assert "srun --exact --mpi=pmix -n 2" in final.log_path(member["job_id"]).read_text()
    params = card["params"]
    made = run_candle("data", "synth", "nt3", "--out", str(tmp_path / "data"),
                      "--set", f"features={params['features']}",
                      "--set", f"samples={params['samples']}")
    assert made.returncode == 0, made.stderr
    predicted = run_candle("predict", str(out), "--data", str(tmp_path / "data" / "nt_test2.csv"),
                           "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("row,prob_0,prob_1,class,std,entropy,label")
    assert len(rows) - 1 == round(params["samples"] * params.get("test_fraction", 0.2))


def test_nt3_optuna_in_a_pack_allocation(live_slurm: None, tmp_path: Path) -> None:
    """The shipped NT3 Optuna sweep on Slurm: the supervisor inside one 2-node allocation
    asks trials, runs each as a 2-rank Horovod srun step, prunes, and tells the journal."""
    doc = __import__("yaml").safe_load((ROOT / "workflows" / "nt3_optuna.yaml").read_text())
    doc["store"] = str(tmp_path / "runs")
    doc["params"].update(epochs=3, samples=400)
    doc["search"].update(trials=4)
    doc["resources"] = {"scheduler": "slurm", "site": "local-slurm", "mode": "pack",
                        "nodes": 2, "ranks_per_job": 2, "walltime": "00:15:00"}
    path = tmp_path / "nt3-optuna.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 trials told" in proc.stdout
    store = RunStore(tmp_path / "runs" / "nt3-optuna")
    summary = json.loads(run_candle("summary", str(store.root), "--format", "json").stdout)
    assert summary["used"] == 4 and summary["best"]
    assert {r["state"] for r in summary["rows"]} <= {"complete", "pruned"}
    done = [r for r in results(store) if r.get("status") == "done"]
    assert done
    for result in done:
        assert result["horovod"]["size"] == 2
        assert "srun --exact --mpi=pmix -n 2" in store.log_path(result["job_id"]).read_text()
    status = status_json(store.root)
    assert status["batch"][0]["kind"] == "pack" and status["counts"]["failed"] == 0


def test_optuna_array_mode_goes_batch_by_batch(live_slurm: None, tmp_path: Path) -> None:
    """Array mode with search.batch: each `candle run` tells the ended batch and submits
    the next; --wait loops until the budget is used. No trial repeats another's params."""
    (tmp_path / "curve.py").write_text(
        (ROOT / "workflows" / "user_model" / "curve.py").read_text())
    doc = {"name": "batches", "benchmark": "curve:train",
           "params": {"epochs": 2, "epoch_seconds": 0.05},
           "search": {"method": "optuna", "sampler": "tpe", "batch": 2, "trials": 5,
                      "space": {"lr": {"loguniform": [0.0001, 1.0]},
                                "width": {"int": [8, 512], "log": True}}},
           "resources": {"scheduler": "slurm", "site": "local-slurm", "mode": "array",
                         "walltime": "00:05:00"},
           "store": str(tmp_path / "runs")}
    path = tmp_path / "batches.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("submitted ") == 3  # 2 + 2 + 1 trials
    assert "5/5 trials told" in proc.stdout
    store = RunStore(tmp_path / "runs" / "batches")
    summary = json.loads(run_candle("summary", str(store.root), "--format", "json").stdout)
    assert summary["used"] == 5
    assert {r["state"] for r in summary["rows"]} == {"complete"}
    params = [json.dumps(r["params"], sort_keys=True) for r in summary["rows"]]
    assert len(set(params)) == 5
    scripts = sorted(p.name for p in (store.root / "slurm").glob("array-*.sbatch"))
    assert scripts == ["array-0000.sbatch", "array-0001.sbatch", "array-0002.sbatch"]


WARM_MODEL = """
import json, os, socket


def f(params):
    with open(os.path.join(params["job_dir"], f"warm-{os.getpid()}.json"), "w") as out:
        json.dump({"parent": os.getppid(), "host": socket.gethostname(),
                   "node": os.environ.get("SLURMD_NODENAME"),
                   "tensorflow": "tensorflow" in __import__("sys").modules}, out)
    return {"val_loss": float(params["x"])}
"""


def test_warm_workers_in_a_pack_allocation(live_slurm: None, tmp_path: Path) -> None:
    """resources.workers: warm inside a 2-node allocation: one worker per node, started
    once as its own srun step; every job is a child of its node's worker (TensorFlow
    already imported there), and the jobs cover both nodes."""
    (tmp_path / "warm.py").write_text(WARM_MODEL)
    doc = {"name": "warm", "benchmark": "warm:f",
           "search": {"method": "grid", "space": {"x": list(range(12))}, "metric": "val_loss"},
           "resources": {"scheduler": "slurm", "site": "local-slurm", "mode": "pack",
                         "nodes": 2, "walltime": "00:05:00", "workers": "warm"},
           "store": str(tmp_path / "runs")}
    path = tmp_path / "warm.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(tmp_path / "runs" / "warm")
    done = results(store)
    assert len(done) == 12 and all(r["status"] == "done" for r in done)
    seen = [json.loads(p.read_text()) for job in store.jobs()
            for p in store.job_dir(job.id).glob("warm-*.json")]
    assert len(seen) == 12 and all(s["tensorflow"] for s in seen)
    nodes = {s["node"] for s in seen}
    assert len(nodes) == 2, nodes
    for node in nodes:  # one worker per node served all of that node's jobs
        assert len({s["parent"] for s in seen if s["node"] == node}) == 1
    assert {r["node"] for r in done} == nodes  # the result names the node it ran on
    logs = sorted(p.name for p in (store.root / "workers").glob("*.log"))
    assert logs == sorted(f"{node}.log" for node in nodes)
    for job in store.jobs():
        assert "forked by the warm worker" in store.log_path(job.id).read_text()


def test_pbt_in_a_pack_allocation(live_slurm: None, tmp_path: Path) -> None:
    """Population-based training inside one 2-node allocation: the supervisor there plans
    each segment from the lineage, the segments run on both nodes, and every member
    reaches its last epoch with each decision recorded once."""
    from tests.adaptive.test_pbt import MODEL, check_lineage

    (tmp_path / "model.py").write_text(MODEL)
    doc = {"name": "pbt", "benchmark": "model:f", "params": {"epochs": 6},
           "search": {"method": "pbt", "population": 4, "ready": 2,
                      "exploit": {"truncate": 0.25}, "metric": "val_loss",
                      "space": {"lr": {"loguniform": [0.01, 0.9]}}},
           "resources": {"scheduler": "slurm", "site": "local-slurm", "mode": "pack",
                         "nodes": 2, "walltime": "00:05:00"},
           "store": str(tmp_path / "runs")}
    path = tmp_path / "pbt.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pbt: 4 members finished, 0 not" in " ".join(proc.stdout.split())
    store = RunStore(tmp_path / "runs" / "pbt")
    check_lineage(store.root, 4, 6, 2)
    done = results(store)
    assert len(done) == 12 and all(r["status"] == "done" for r in done)
    assert len({r["node"] for r in done}) == 2


HOSTILE_MODEL = '''
import json


def objective(params):
    with open(params["job_dir"] + "/seen.json", "w") as out:
        json.dump({k: params[k] for k in ("label", "note")}, out)
    return {"val_loss": float(len(params["label"]))}
'''


def test_hostile_values_and_paths_execute_nothing_on_slurm(live_slurm: None,
                                                           tmp_path: Path) -> None:
    """Quotes, $(...), backticks, ;, newlines and spaces in the store path and in parameter
    values go through sbatch, the batch script, srun and the job untouched."""
    canary = tmp_path / "PWNED"
    store_dir = tmp_path / f"runs 'a' \"b\" $(touch {canary}) `touch {canary}`; x"
    labels = [f"$(touch {canary})", f"`touch {canary}`", f"a'; touch {canary}; echo '",
              f"line\nnext $(touch {canary})", "  spaced  \"q\" "]
    write(tmp_path / "model.py", HOSTILE_MODEL)
    doc = {
        "name": "hostile", "benchmark": "model:objective",
        "params": {"note": f"&& touch {canary} || $HOME"},
        "search": {"method": "list", "points": [{"label": v} for v in labels],
                   "metric": "val_loss"},
        "resources": {"scheduler": "slurm", "site": str(ROOT / "configs" / "local-slurm.yaml"),
                      "walltime": "00:05:00", "nodes": 2},
        "retries": 0, "store": str(store_dir),
    }
    path = tmp_path / "hostile.yaml"
    path.write_text(json.dumps(doc))
    proc = run_candle("run", str(path), "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(store_dir / "hostile")
    seen = sorted(json.loads((store.job_dir(j.id) / "seen.json").read_text())["label"]
                  for j in store.jobs())
    assert seen == sorted(labels)
    note = json.loads((store.job_dir(next(store.jobs()).id) / "seen.json").read_text())["note"]
    assert note == f"&& touch {canary} || $HOME"
    assert not canary.exists()
    assert not list(tmp_path.glob("PWNED*")) and not (ROOT / "PWNED").exists()
