"""TensorBoard files of a run, read back with TensorBoard's own readers: every job's
per-epoch scalars and HParams session, the run's HParams experiment config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from candle.plan.jobs import Job
from candle.store.tensorboard import (
    EVENTS_FILE,
    TB_DIR,
    record_experiment,
    record_job,
    write_experiment_events,
)
from tests.conftest import ROOT, run_candle, write

HISTORY = {"loss": [0.9, 0.5, 0.25], "val_loss": [1.0, 0.75, 0.6]}


def job(point_params: dict[str, Any], *, fold: int | None = None, replica: int = 0,
        uq: bool = False) -> Job:
    return Job(id="abc123", point=0, point_params=point_params,
               params={"epochs": 3, **point_params}, fold=fold, folds=2 if fold is not None
               else None, replica=replica, seed=1, settings={"uq": {"method": "ensemble"}}
               if uq else {})


def accumulate(directory: Path) -> EventAccumulator:
    files = list(directory.iterdir())
    assert [f.name for f in files] == [EVENTS_FILE], files  # one file, no temp left over
    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def hparams_content(acc: EventAccumulator) -> dict[str, bytes]:
    return dict(acc.PluginTagToContent(metadata.PLUGIN_NAME))


def session_values(start: Any) -> dict[str, Any]:
    return {name: getattr(value, value.WhichOneof("kind"))
            for name, value in start.hparams.items()}


def test_a_job_file_holds_its_epochs_and_its_hparams_session(tmp_path: Path) -> None:
    result = {"status": "done", "started": 1000.0, "ended": 1010.0, "history": HISTORY,
              "metrics": {"loss": 0.25, "val_loss": 0.6, "params_count": 1234.0}}
    record_job(tmp_path, job({"lr": 0.01, "act": "relu", "conv": [16, 1], "bn": True},
                             fold=1, replica=0, uq=True), result)
    acc = accumulate(tmp_path / TB_DIR)
    got = scalars(acc)
    for metric, values in HISTORY.items():  # step = epoch, from 1
        assert [step for step, _ in got[metric]] == [1, 2, 3]
        assert [v for _, v in got[metric]] == pytest.approx(values, rel=1e-6)
    assert got["params_count"] == [(3, 1234.0)]  # a final-only metric: at the last epoch
    content = hparams_content(acc)
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    assert start.group_name == "abc123" and start.start_time_secs == 1000.0
    assert session_values(start) == {"lr": 0.01, "act": "relu", "conv": "[16, 1]",
                                     "bn": True, "fold": 1.0, "replica": 0.0}
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS and end.end_time_secs == 1010.0


def test_a_later_attempt_replaces_the_file_and_a_failure_keeps_the_epochs_so_far(
        tmp_path: Path) -> None:
    record_job(tmp_path, job({"lr": 0.1}), {"status": "failed", "started": 1.0, "ended": 2.0,
                                          "history": {"val_loss": [3.0]}, "metrics": {}})
    first = accumulate(tmp_path / TB_DIR)
    assert scalars(first) == {"val_loss": [(1, 3.0)]}
    end = metadata.parse_session_end_info_plugin_data(
        hparams_content(first)[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_FAILURE
    start = metadata.parse_session_start_info_plugin_data(
        hparams_content(first)[metadata.SESSION_START_INFO_TAG])
    assert session_values(start) == {"lr": 0.1}  # no fold, no replica: neither CV nor UQ

    record_job(tmp_path, job({"lr": 0.1}), {"status": "done", "started": 3.0, "ended": 4.0,
                                          "history": {"val_loss": [2.0, 1.0]},
                                          "metrics": {"val_loss": 1.0}})
    assert scalars(accumulate(tmp_path / TB_DIR)) == {"val_loss": [(1, 2.0), (2, 1.0)]}


@pytest.mark.parametrize(("status", "expected"), [
    ("done", api_pb2.STATUS_SUCCESS), ("failed", api_pb2.STATUS_FAILURE),
    ("timeout", api_pb2.STATUS_FAILURE), ("interrupted", api_pb2.STATUS_RUNNING),
    ("pruned", api_pb2.STATUS_UNKNOWN)])
def test_every_ending_has_its_session_status(tmp_path: Path, status: str,
                                             expected: int) -> None:
    record_job(tmp_path, job({"lr": 0.1}), {"status": status, "started": 1.0, "ended": 2.0,
                                          "history": {"val_loss": [3.0, 2.0]}, "metrics": {}})
    acc = accumulate(tmp_path / TB_DIR)
    end = metadata.parse_session_end_info_plugin_data(
        hparams_content(acc)[metadata.SESSION_END_INFO_TAG])
    assert end.status == expected
    assert scalars(acc) == {"val_loss": [(1, 3.0), (2, 2.0)]}  # the epochs so far


def test_the_temp_file_is_not_taken_for_an_events_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    made: list[str] = []
    mkstemp = tempfile.mkstemp

    def recording(**kwargs: Any) -> tuple[int, str]:
        fd, name = mkstemp(**kwargs)
        made.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", recording)
    record_job(tmp_path, job({"lr": 0.1}), {"status": "done", "history": HISTORY})
    write_experiment_events(tmp_path / "run", {"lr": ("interval", (0.0, 1.0))}, ["loss"])
    assert len(made) == 2 and not any("tfevents" in name for name in made), made


def test_writing_imports_no_tensorflow(tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from candle.plan.jobs import Job
from candle.store.tensorboard import record_job, write_experiment_events
job = Job(id="j", point=0, point_params={{"lr": 0.1}}, params={{}}, fold=None, folds=None,
          replica=0, seed=1)
assert record_job(Path({str(tmp_path)!r}), job, {{"status": "done", "history": {{"loss": [1.0]}}}})
write_experiment_events(Path({str(tmp_path)!r}) / "run", {{"lr": ("interval", (0, 1))}}, ["loss"])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_file_that_cannot_be_written_does_not_fail_the_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / TB_DIR).write_text("a file where the folder should be")
    assert record_job(tmp_path, job({"lr": 0.1}), {"status": "done"}) is None
    assert "warning: job abc123: TensorBoard events not written" in capsys.readouterr().err


def test_the_experiment_config_has_the_domains_and_the_metrics(tmp_path: Path) -> None:
    write_experiment_events(tmp_path, {
        "lr": ("interval", (1e-4, 1.0)),
        "act": ("discrete", ("relu", "tanh")),
        "width": ("discrete", (8, 16)),
        "conv": ("discrete", ([16, 1], [32, 1])),
        "bn": ("discrete", (True, False)),
    }, ["val_loss", "loss", "test_auc"])
    experiment = metadata.parse_experiment_plugin_data(
        hparams_content(accumulate(tmp_path))[metadata.EXPERIMENT_TAG])
    infos = {info.name: info for info in experiment.hparam_infos}
    assert (infos["lr"].domain_interval.min_value,
            infos["lr"].domain_interval.max_value) == (1e-4, 1.0)
    assert infos["lr"].type == api_pb2.DATA_TYPE_FLOAT64
    assert list(infos["act"].domain_discrete) == ["relu", "tanh"]
    assert infos["act"].type == api_pb2.DATA_TYPE_STRING
    assert list(infos["width"].domain_discrete) == [8.0, 16.0]
    assert list(infos["conv"].domain_discrete) == ["[16, 1]", "[32, 1]"]  # as sessions say
    assert list(infos["bn"].domain_discrete) == [True, False]
    assert infos["bn"].type == api_pb2.DATA_TYPE_BOOL
    assert [(m.name.group, m.name.tag, m.dataset_type) for m in experiment.metric_infos] == [
        ("", "val_loss", api_pb2.DATASET_VALIDATION), ("", "loss", api_pb2.DATASET_TRAINING),
        ("", "test_auc", api_pb2.DATASET_UNKNOWN)]


def experiment_of(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    content = hparams_content(accumulate(run_dir / TB_DIR))
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    return ({info.name: info for info in experiment.hparam_infos},
            [m.name.tag for m in experiment.metric_infos])


def test_each_search_method_gives_its_domains(tmp_path: Path) -> None:
    from candle.spec.parse import load_sweep

    sweeps: dict[str, dict[str, Any]] = {
        "grid": {"space": {"lr": [0.1, 0.01], "act": ["relu", "tanh"]}},
        "random": {"trials": 3, "space": {"lr": {"loguniform": [0.001, 0.1]},
                                          "width": {"int": [8, 64]}, "act": ["relu", "tanh"]}},
        "list": {"points": [{"lr": 0.1, "act": "relu"}, {"lr": 0.01}]},
        "optuna": {"trials": 3, "space": {"lr": {"uniform": [0.0, 1.0]}}},
    }
    domains: dict[str, dict[str, Any]] = {}
    for method, search in sweeps.items():
        path = write(tmp_path / f"{method}.yaml", f"""
            name: {method}
            benchmark: "model:train"
            search: {json.dumps({"method": method, **search, "metric": "val_loss"})}
            cv: {{folds: 2}}
            resources: {{scheduler: local}}
            store: runs
        """)
        sweep = load_sweep(path)
        assert record_experiment(sweep.run_dir, sweep) is not None
        domains[method], metrics = experiment_of(sweep.run_dir)
        assert metrics == ["val_loss"]  # a user's function: its objectives
        assert list(domains[method]["fold"].domain_discrete) == [0.0, 1.0]
        assert "replica" not in domains[method]  # no UQ
    assert list(domains["grid"]["lr"].domain_discrete) == [0.1, 0.01]
    assert list(domains["grid"]["act"].domain_discrete) == ["relu", "tanh"]
    assert (domains["random"]["lr"].domain_interval.min_value,
            domains["random"]["lr"].domain_interval.max_value) == (0.001, 0.1)
    assert domains["random"]["width"].domain_interval.max_value == 64.0
    assert list(domains["list"]["lr"].domain_discrete) == [0.1, 0.01]
    assert list(domains["list"]["act"].domain_discrete) == ["relu"]
    assert domains["optuna"]["lr"].domain_interval.max_value == 1.0


# -- end to end: `candle run` -----------------------------------------------------------
def check_jobs(run_dir: Path) -> list[dict[str, Any]]:
    """Every job's one events file holds its result's history; returns the results."""
    results = []
    for result_file in sorted((run_dir / "jobs").glob("*/result.json")):
        result = json.loads(result_file.read_text())
        assert result["status"] == "done", result
        assert result["history"], result
        acc = accumulate(result_file.parent / TB_DIR)
        got = scalars(acc)
        for metric, values in result["history"].items():
            assert [step for step, _ in got[metric]] == list(range(1, len(values) + 1))
            assert [v for _, v in got[metric]] == pytest.approx(values, rel=1e-6)
        start = metadata.parse_session_start_info_plugin_data(
            hparams_content(acc)[metadata.SESSION_START_INFO_TAG])
        assert start.group_name == result["job_id"]
        results.append({**result, "hparams": session_values(start)})
    return results


@pytest.mark.slow
def test_an_nt3_grid_run_writes_tensorboard_files(tmp_path: Path) -> None:
    sweep = write(tmp_path / "nt3.yaml", """
        name: nt3-tb
        benchmark: nt3
        params: {epochs: 2, data: synthetic, features: 100, samples: 120,
                 conv: [4, 5, 1, 4, 5, 1], dense: [8, 4], batch_size: 20}
        search:
          method: grid
          space: {learning_rate: [0.001, 0.01]}
          metric: val_loss
        resources: {scheduler: local, max_concurrent: 2}
        store: runs
    """)
    proc = run_candle("run", str(sweep), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "runs" / "nt3-tb"
    results = check_jobs(run_dir)
    assert len(results) == 2
    assert all(len(r["history"]["val_loss"]) == 2 for r in results)
    assert sorted(r["hparams"]["learning_rate"] for r in results) == [0.001, 0.01]
    infos, metrics = experiment_of(run_dir)
    assert list(infos) == ["learning_rate"]
    assert list(infos["learning_rate"].domain_discrete) == [0.001, 0.01]
    assert metrics[0] == "val_loss" and {"loss", "accuracy", "val_accuracy"} <= set(metrics)


CURVE = ROOT / "workflows" / "user_model" / "curve.py"


@pytest.mark.slow
@pytest.mark.parametrize("search", [
    {"method": "grid", "space": {"lr": [0.01, 0.1], "width": [64]}},
    {"method": "optuna", "trials": 2, "space": {"lr": {"loguniform": [0.001, 0.1]},
                                                "width": {"int": [8, 128]}}},
], ids=["grid", "optuna"])
def test_a_user_models_reported_epochs_reach_tensorboard(tmp_path: Path,
                                                         search: dict[str, Any]) -> None:
    (tmp_path / "curve.py").write_text(CURVE.read_text())
    sweep = write(tmp_path / "sweep.yaml", f"""
        name: curve
        benchmark: "curve:train"
        params: {{epochs: 3, epoch_seconds: 0}}
        search: {json.dumps({**search, "metric": "val_loss"})}
        resources: {{scheduler: local, max_concurrent: 2}}
        store: runs
    """)
    proc = run_candle("run", str(sweep), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "runs" / "curve"
    results = check_jobs(run_dir)
    assert len(results) == 2
    assert all(len(r["history"]["val_loss"]) == 3 for r in results)  # candle.report epochs
    assert all(set(r["hparams"]) == {"lr", "width"} for r in results)
    infos, metrics = experiment_of(run_dir)
    assert set(infos) == {"lr", "width"} and metrics == ["val_loss"]
    assert_tensorboard_shows_the_sweep(run_dir, {r["job_id"]: r["metrics"]["val_loss"]
                                                 for r in results})


def assert_tensorboard_shows_the_sweep(run_dir: Path, val_loss: dict[str, float]) -> None:
    """TensorBoard's own HParams plugin, over a data provider of the run directory (in a
    subprocess: the plugin's loaders keep module state): one session group per job, with
    its final val_loss, under the run's experiment config."""
    script = f"""
import json, sys
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.context import RequestContext
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
multiplexer = plugin_event_multiplexer.EventMultiplexer()
multiplexer.AddRunsFromDirectory({str(run_dir)!r})
multiplexer.Reload()
provider = data_provider.MultiplexerDataProvider(multiplexer, {str(run_dir)!r})
context = backend_context.Context(base_plugin.TBContext(data_provider=provider,
                                                        logdir={str(run_dir)!r}))
request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[
    api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
    api_pb2.STATUS_RUNNING])
ctx = RequestContext()
groups = list_session_groups.Handler(ctx, context, "", request).run()
print(json.dumps([{{"name": g.name, "hparams": sorted(g.hparams),
                    "status": [s.status for s in g.sessions],
                    "metrics": {{m.name.tag: m.value for m in g.metric_values}}}}
                  for g in groups.session_groups]))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    groups = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(g["name"] for g in groups) == sorted(val_loss)  # a row per job
    for group in groups:
        assert group["hparams"] == ["lr", "width"]
        assert group["status"] == [api_pb2.STATUS_SUCCESS]
        assert group["metrics"] == {"val_loss": pytest.approx(val_loss[group["name"]], rel=1e-6)}
