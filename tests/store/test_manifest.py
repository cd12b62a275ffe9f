"""run.json is one typed, versioned manifest: what is written reads back the same, a run
directory of the candle before the manifest (no schema) still reads, and one written by
a newer candle is refused with one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candle.errors import UserError
from candle.plan import iter_jobs
from candle.spec import load_sweep
from candle.store import RunStore
from candle.store.manifest import SCHEMA, RunManifest
from candle.supervisor.run import run_meta
from tests.conftest import write

SWEEP = """name: manifest
benchmark: nt3
params: {epochs: 1}
search:
  method: optuna
  trials: 4
  metric: val_loss
  space: {learning_rate: {uniform: [0.001, 0.1], log: true}}
cv: {folds: 2, seed: 3, stratify: false}
uq: {method: mc_dropout, replicas: 2, samples: 4}
resources: {scheduler: slurm, site: generic-slurm, ranks_per_job: 2, walltime: "01:00:00"}
retries: 2
"""

# run.json as the candle before the manifest wrote it (run_meta at bb7ee1c): no schema
OLD_RUN_JSON = {
    "name": "old", "benchmark": "nt3", "metric": "val_loss", "direction": "minimize",
    "metrics": ["val_loss"], "directions": ["minimize"], "method": "grid", "folds": None,
    "cv_seed": 0, "stratify": True, "replicas": 1, "uq": None, "base_dir": "/work/sweeps",
    "source": "/work/sweeps/old.yaml", "candle_version": "0.9.0", "updated": 1700000000.0,
    "retries": 1, "fail_fast": False,
    "template": {"benchmark": "nt3", "params": {"epochs": 1}, "folds": None, "replicas": 1,
                 "base_seed": 0},
    "optuna": None,
    "resources": {"scheduler": "pbs", "ranks_per_job": 4, "max_concurrent": 0,
                  "walltime": "02:00:00", "nodes": 2, "slots_per_node": 0,
                  "gpus_per_node": 4, "oversubscribe": False, "mode": "pack",
                  "array_throttle": 0, "site": "/work/sites/polaris.yaml", "signal_lead": 60,
                  "walltime_given": True},
    "jobs": 6,
}


def test_a_written_manifest_reads_back_the_same(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "sweep.yaml", SWEEP))
    manifest = run_meta(sweep)
    store = RunStore(tmp_path / "run")
    store.initialise(sweep.text, manifest, iter_jobs(sweep))
    assert json.loads((store.root / "run.json").read_text())["schema"] == SCHEMA
    read = store.manifest()
    assert read == manifest
    assert read.optuna is not None and read.optuna.study_name == "manifest"
    assert read.resources.ranks_per_job == 2 and read.resources.scheduler == "slurm"
    assert read.site_file is not None and read.site_file.name == "generic-slurm.yaml"
    assert (read.folds, read.cv_seed, read.stratify, read.retries) == (2, 3, False, 2)
    assert read.uq_method == "mc_dropout"
    assert RunManifest.from_record(read.to_record(), store.root / "run.json") == read


def test_a_run_directory_of_the_candle_before_the_manifest_is_migrated(
        tmp_path: Path) -> None:
    write(tmp_path / "old" / "run.json", json.dumps(OLD_RUN_JSON))
    manifest = RunStore(tmp_path / "old").manifest()
    assert (manifest.name, manifest.benchmark, manifest.metric) == ("old", "nt3", "val_loss")
    assert manifest.metrics == ("val_loss",) and manifest.base_dir == Path("/work/sweeps")
    assert manifest.resources.scheduler == "pbs" and manifest.resources.gpus_per_node == 4
    assert manifest.resources.signal_lead == 60 and manifest.resources.site is None
    assert manifest.site_file == Path("/work/sites/polaris.yaml")
    assert manifest.template == OLD_RUN_JSON["template"] and manifest.optuna is None
    assert manifest.jobs == 6 and manifest.uq_method == "ensemble"
    # written again, it is the current schema with the same keys it had, plus the schema
    # and the keys added since (with their defaults)
    record = manifest.to_record()
    assert record == {**OLD_RUN_JSON, "schema": SCHEMA, "job_timeout": 0.0, "pbt": None,
                      "resources": {**OLD_RUN_JSON["resources"], "workers": "warm"}}


def test_an_older_run_json_missing_later_keys_gets_their_defaults(tmp_path: Path) -> None:
    old = {k: v for k, v in OLD_RUN_JSON.items()
           if k not in ("name", "metrics", "directions", "cv_seed", "stratify", "fail_fast",
                        "template", "optuna", "jobs")}
    write(tmp_path / "older" / "run.json", json.dumps(old))
    manifest = RunStore(tmp_path / "older").manifest()
    assert manifest.name == "older" and manifest.metrics == ("val_loss",)
    assert (manifest.cv_seed, manifest.stratify, manifest.fail_fast) == (0, True, False)


def test_a_manifest_of_a_newer_candle_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "new" / "run.json",
                 json.dumps({**OLD_RUN_JSON, "schema": SCHEMA + 1, "renamed": 1}))
    with pytest.raises(UserError) as info:
        RunStore(tmp_path / "new").manifest()
    assert str(info.value) == (f"{path}: written by a newer candle (schema {SCHEMA + 1}); "
                               "upgrade candle")


def test_a_damaged_manifest_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad" / "run.json", json.dumps({"name": "bad"}))
    with pytest.raises(UserError) as info:
        RunStore(tmp_path / "bad").manifest()
    assert str(info.value).startswith(f"{path}: not a run manifest candle can read")
