"""TensorBoard event files of a run, so ``tensorboard --logdir RUN_DIR`` shows the sweep.

Each job's ``jobs/<id>/tb/`` holds one events file: a scalar per metric per epoch (step =
epoch, from 1, as candle.report counts) and the job's HParams session (its point's varied
params, plus fold and replica in CV / UQ sweeps; one session group per job, so the HParams
table has a row per job). The run's ``tb/`` holds the HParams experiment config: every
varied param with its domain and the metrics. Written with the tensorboard package's
protos and record framing only: no TensorFlow import (a user model may not have it).

Every file is written whole, atomically (a temp file whose name TensorBoard skips, fsync,
rename) under a fixed name: a job's later attempt replaces its file, never adds one.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candle.benchmark import find_benchmark
from candle.spec.model import NOISE_PARAM, Choice, IntRange, Sweep, Uniform
from candle.store.atomic import atomic_writer

if TYPE_CHECKING:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from candle.plan.jobs import Job

EVENTS_FILE = "events.out.tfevents.candle"  # "tfevents" in the name: TensorBoard reads it
TB_DIR = "tb"  # jobs/<id>/tb/ for a job; <run>/tb/ for the experiment config
TMP_PREFIX = ".tb-"  # a temp file TensorBoard does not take for an events file
FOLD, REPLICA = "fold", "replica"

# candle's job status → the HParams session status. An interrupted job goes on in its
# next attempt (running); a pruned one stopped early on the search's word (neither).
_STATUS = {"done": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "timeout": "STATUS_FAILURE",
           "interrupted": "STATUS_RUNNING", "pruned": "STATUS_UNKNOWN"}


# -- values ---------------------------------------------------------------------------
def hparam_value(value: Any) -> bool | float | str:
    """A param value as an HParams value: bools and numbers as they are, strings too,
    anything else (lists, None) as its JSON text."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return json.dumps(value, sort_keys=True)


def job_hparams(job: Job) -> dict[str, bool | float | str]:
    """The job's HParams: its point's (varied) params, its fold in a CV sweep, its
    replica in a UQ sweep."""
    values = {str(k): hparam_value(v) for k, v in job.point_params.items()}
    if job.fold is not None:
        values[FOLD] = float(job.fold)
    if job.settings.get("uq") is not None or job.replica:
        values[REPLICA] = float(job.replica)
    return values


# -- the events file ------------------------------------------------------------------
def _plugin_summary(tag: str, data: HParamsPluginData) -> Summary:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata

    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data),
                      tensor=metadata.NULL_TENSOR)
    return summary


def _encode(events: Iterable[Event]) -> bytes:
    from tensorboard.summary.writer.record_writer import RecordWriter

    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    for event in events:
        writer.write(event.SerializeToString())
    return buffer.getvalue()


def _write_events(directory: Path, events: list[Event]) -> Path:
    from tensorboard.compat.proto import event_pb2

    first = event_pb2.Event(wall_time=events[0].wall_time if events else time.time(),
                            file_version="brain.Event:2")
    path = directory / EVENTS_FILE
    with atomic_writer(path, tmp_prefix=TMP_PREFIX) as handle:
        handle.write(_encode([first, *events]))
    return path


def write_job_events(directory: Path, *, session: str, hparams: Mapping[str, bool | float | str],
                     history: Mapping[str, list[float]], metrics: Mapping[str, Any],
                     status: str, started: float, ended: float) -> Path:
    """``directory``/events file: the session start (``hparams``, group ``session``), one
    scalar per ``history`` metric per epoch (step = epoch, from 1), each final ``metrics``
    value the history lacks at the last epoch, and the session end (``status``: a candle
    job status). Epoch times are not recorded: the scalars carry the job's end time."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=session, start_time_secs=started)
    for name in sorted(hparams):
        value = hparams[name]
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        else:
            start.hparams[name].number_value = float(value)
    events = [event_pb2.Event(wall_time=started, step=0, summary=_plugin_summary(
        metadata.SESSION_START_INFO_TAG,
        plugin_data_pb2.HParamsPluginData(session_start_info=start)))]

    def scalar(tag: str, step: int, value: Any) -> None:
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, simple_value=float(value))
        events.append(event_pb2.Event(wall_time=ended, step=step, summary=summary))

    epochs = max((len(series) for series in history.values()), default=0)
    for name in sorted(history):
        for epoch, value in enumerate(history[name], start=1):
            scalar(str(name), epoch, value)
    for name in sorted(metrics):  # a final-only metric (params_count): at the last epoch
        if name not in history and _is_number(metrics[name]):
            scalar(str(name), max(1, epochs), metrics[name])
    end = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value(_STATUS.get(status, "STATUS_UNKNOWN")),
        end_time_secs=ended)
    events.append(event_pb2.Event(wall_time=ended, step=max(1, epochs), summary=_plugin_summary(
        metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))))
    return _write_events(directory, events)


def record_job(job_dir: Path, job: Job, result: Mapping[str, Any]) -> Path | None:
    """Write the job's events file from its result record (any status: the history so
    far). Never raises: a job does not fail for its TensorBoard file (one warning line)."""
    try:
        started = float(result.get("started") or time.time())
        return write_job_events(
            job_dir / TB_DIR, session=job.id, hparams=job_hparams(job),
            history=result.get("history") or {}, metrics=result.get("metrics") or {},
            status=str(result.get("status")), started=started,
            ended=float(result.get("ended") or started))
    except Exception as exc:  # the job's result matters, this file does not
        print(f"candle: warning: job {job.id}: TensorBoard events not written: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the experiment -------------------------------------------------------------------
def _discrete(values: Iterable[Any]) -> tuple[str, list[bool | float | str]]:
    """(data type, distinct values in order) of a discrete domain; mixed kinds: strings."""
    distinct = {(type(v).__name__, v): v for v in map(hparam_value, values)}  # True != 1.0
    converted = list(distinct.values())
    kinds = {type(v) for v in converted}
    if kinds == {bool}:
        return "DATA_TYPE_BOOL", converted
    if kinds == {float}:
        return "DATA_TYPE_FLOAT64", converted
    strings = [v if isinstance(v, str) else json.dumps(v) for v in converted]
    return "DATA_TYPE_STRING", list(dict.fromkeys(strings))


def sweep_hparams(sweep: Sweep) -> dict[str, tuple[str, Any]]:
    """name: ("discrete", values) or ("interval", (low, high)), in the sweep's order: the
    search space's params (a list search: its points' keys), a noise sweep's level, then
    fold and replica when the sweep has CV / UQ."""
    domains: dict[str, tuple[str, Any]] = {}
    search = sweep.search
    for name, dim in search.space.items():
        if isinstance(dim, Choice):
            domains[name] = ("discrete", dim.values)
        elif isinstance(dim, Uniform | IntRange):
            domains[name] = ("interval", (float(dim.low), float(dim.high)))
    if search.method == "list":
        listed: dict[str, list[Any]] = {}
        for point in search.points:
            for key, value in point.items():
                listed.setdefault(str(key), []).append(value)
        for name, values in listed.items():
            domains.setdefault(name, ("discrete", values))
    if sweep.uq is not None and sweep.uq.noise_levels:
        domains[NOISE_PARAM] = ("discrete", sweep.uq.noise_levels)
    if sweep.cv is not None and sweep.cv.folds is not None:
        domains[FOLD] = ("discrete", tuple(range(sweep.cv.folds)))
    if sweep.uq is not None:
        domains[REPLICA] = ("discrete", tuple(range(sweep.uq.replicas)))
    return domains


def sweep_metrics(sweep: Sweep) -> list[str]:
    """The objectives first, then every other metric a built-in (or a user's Benchmark
    definition) declares; a user's training function: its objectives."""
    names = [metric for metric, _ in sweep.search.objectives]
    try:
        definition = find_benchmark(sweep.benchmark, sweep.base_dir)
    except Exception:  # the jobs will say what is wrong with it
        definition = None
    if definition is not None:
        names += [m for m in definition.metrics if m not in names]
    return names


def _dataset(metric: str) -> str:
    if metric.startswith("val_"):
        return "DATASET_VALIDATION"
    if metric.startswith("test_"):
        return "DATASET_UNKNOWN"
    return "DATASET_TRAINING"


def write_experiment_events(directory: Path, hparams: Mapping[str, tuple[str, Any]],
                            metrics: Iterable[str], created: float | None = None) -> Path:
    """``directory``/events file holding the HParams experiment: ``hparams`` (name:
    ("discrete", values) | ("interval", (low, high))) and ``metrics`` (scalar tags)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    created = time.time() if created is None else created
    experiment = api_pb2.Experiment(time_created_secs=created)
    for name, (kind, domain) in hparams.items():
        info = experiment.hparam_infos.add(name=name, display_name=name)
        if kind == "interval":
            low, high = domain
            info.type = api_pb2.DataType.Value("DATA_TYPE_FLOAT64")
            info.domain_interval.min_value = float(low)
            info.domain_interval.max_value = float(high)
        else:
            data_type, values = _discrete(domain)
            info.type = api_pb2.DataType.Value(data_type)
            info.domain_discrete.extend(values)
    for metric in metrics:
        experiment.metric_infos.add(
            name=api_pb2.MetricName(group="", tag=metric), display_name=metric,
            dataset_type=api_pb2.DatasetType.Value(_dataset(metric)))
    summary = _plugin_summary(metadata.EXPERIMENT_TAG,
                              plugin_data_pb2.HParamsPluginData(experiment=experiment))
    return _write_events(directory, [event_pb2.Event(wall_time=created, step=0,
                                                     summary=summary)])


def record_experiment(run_dir: Path, sweep: Sweep) -> Path | None:
    """The run's ``tb/`` experiment config from the sweep (when the run is planned).
    Never raises: the sweep runs without it (one warning line)."""
    try:
        return write_experiment_events(run_dir / TB_DIR, sweep_hparams(sweep),
                                       sweep_metrics(sweep))
    except Exception as exc:  # the run matters, this file does not
        print(f"candle: warning: TensorBoard experiment config not written: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return None
