"""Apply a source's member models to a new-data file, chunk by chunk.

The benchmark's predictor (``Benchmark.predictor``) streams the file in blocks of rows,
already scaled as in training; every member (and, with MC dropout, every dropout-on pass of
every member) predicts each block, the output module aggregates, and the rows go to a temp
file renamed into place at the end. Memory holds one block and its predictions at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from candle.benchmark import (
    PREDICT_FUNCTION,
    DataError,
    PredictInput,
    find_benchmark,
    load_attribute,
)
from candle.errors import UserError
from candle.predict import CHUNK_ROWS
from candle.predict.output import Layout, classify, format_rows, regress
from candle.predict.source import PredictSource
from candle.store.atomic import atomic_writer

BATCH = 32  # rows per forward call: a full-width NT3 conv layer holds ~4 MB per row
MC_SEED = 0  # dropout masks are repeatable run to run


@dataclass
class PredictReport:
    rows: int
    seconds: float
    members: int
    passes: int  # per member; 0: one deterministic pass
    out: Path
    labelled: bool
    columns: list[str]

    @property
    def samples_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def default_passes(source: PredictSource) -> int:
    """MC-dropout passes when none are asked: the run's ``uq.samples`` if its members were
    trained for MC dropout, else none."""
    uq = source.uq or {}
    if uq.get("method") == "mc_dropout":
        return int(uq.get("samples") or 0)
    return 0


def predictor_for(source: PredictSource) -> Callable[..., PredictInput]:
    try:
        definition = find_benchmark(source.benchmark, source.base_dir)
    except (ImportError, TypeError) as exc:
        raise UserError(f"cannot load benchmark {source.benchmark!r}: {exc}",
                        file=source.label) from None
    if definition is None or not definition.predictor:
        raise UserError(f"benchmark {source.benchmark!r} has no reader for new data (its "
                        "Benchmark names no predictor)", file=source.label)
    spec = definition.predictor
    if ":" not in spec:
        spec = f"{spec}:{PREDICT_FUNCTION}"
    found = load_attribute(spec, source.base_dir)
    if not callable(found):
        raise UserError(f"benchmark {source.benchmark!r}: predictor {spec} is not a function",
                        file=source.label)
    reader: Callable[..., PredictInput] = found
    return reader


def load_members(source: PredictSource) -> list[Any]:
    """Each member model (no optimizer state, no custom losses needed)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    models = []
    for member in source.members:
        try:
            models.append(tf.keras.models.load_model(member.model, compile=False))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the model: {str(exc).splitlines()[0][:200]}",
                            file=member.model) from None
    return models


def _forward_functions(models: list[Any]) -> list[Callable[[Any, bool], Any]]:
    import tensorflow as tf

    def make(model: Any) -> Callable[[Any, bool], Any]:
        """Traced once per member (any number of rows): eager calls are several times slower."""
        spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
        on = tf.function(lambda x: model(x, training=True), input_signature=spec)
        off = tf.function(lambda x: model(x, training=False), input_signature=spec)
        return lambda x, training: (on if training else off)(x)

    return [make(model) for model in models]


def _raw(forward: Callable[[Any, bool], Any], x: Any, training: bool, batch: int) -> Any:
    parts = [np.asarray(forward(x[i : i + batch], training)) for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32)


def predict_file(source: PredictSource, data: Path, out: Path, *, mc_passes: int | None = None,
                 chunk_rows: int = CHUNK_ROWS, batch_rows: int = BATCH,
                 progress: Callable[[int, int], None] | None = None,
                 models: list[Any] | None = None) -> PredictReport:
    """Write ``out`` (CSV, atomically) with one row per sample of ``data``."""
    if chunk_rows < 1:
        raise UserError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    passes = default_passes(source) if mc_passes is None else mc_passes
    if passes < 0:
        raise UserError(f"--mc-passes must be 0 or more, got {passes}")
    reader = predictor_for(source)
    try:  # before TensorFlow: a file of the wrong width or format fails at once
        opened = reader(Path(data), dict(source.params), source.uq, source.base_dir,
                        chunk_rows)
    except DataError as exc:
        raise UserError(str(exc)) from None
    models = models if models is not None else load_members(source)
    layout = _layout(opened, source, passes)
    _check_models(models, opened, source)
    import tensorflow as tf

    forwards = _forward_functions(models)
    if passes:
        tf.random.set_seed(MC_SEED)
    started = time.perf_counter()
    done = 0
    try:
        with atomic_writer(Path(out)) as handle:
            handle.write((",".join(layout.columns()) + "\n").encode())
            if progress is not None:
                progress(0, opened.rows)
            for chunk in opened.chunks:
                n = len(chunk.x)
                if n == 0:
                    continue
                _check_width(chunk.x, models[0], data, opened)
                outputs = [_raw(f, chunk.x, passes > 0, batch_rows)
                           for f in forwards for _ in range(max(1, passes))]
                if opened.kind == "classification":
                    values = classify(np.stack(outputs), chunk.labels)
                else:
                    split = opened.split_output or (lambda r: {"mean": r[:, 0]})
                    values = regress([split(o) for o in outputs], chunk.labels, layout)
                handle.write(format_rows(layout, done, chunk.columns, values, n).encode())
                done += n
                if progress is not None:
                    progress(done, max(done, opened.rows))
    except DataError as exc:
        raise UserError(str(exc)) from None
    seconds = time.perf_counter() - started
    return PredictReport(done, seconds, len(models), passes, Path(out), opened.labelled,
                         layout.columns())


def _layout(opened: PredictInput, source: PredictSource, passes: int) -> Layout:
    if opened.kind == "classification":
        return Layout("classification", classes=opened.classes, labelled=opened.labelled,
                      ids=opened.ids)
    head = str((source.uq or {}).get("loss") or "") if opened.split_output else ""
    levels: tuple[float, ...] = ()
    if head == "quantile":
        probe = opened.split_output(np.zeros((1, 8), dtype=np.float32)) \
            if opened.split_output else {}
        levels = tuple(float(v) for v in probe.get("quantile_levels", ()))
    spread = bool(head) or len(source.members) * max(1, passes) > 1
    return Layout("regression", labelled=opened.labelled, head=head, levels=levels,
                  interval=spread, target=opened.target, unit=opened.unit, ids=opened.ids)


def _check_models(models: list[Any], opened: PredictInput, source: PredictSource) -> None:
    shapes = {tuple(m.input_shape[1:]) for m in models}
    if len(shapes) > 1:
        raise UserError(f"the members expect different inputs {sorted(shapes)}",
                        file=source.label)
    if opened.kind == "classification":
        widths = {int(m.output_shape[-1]) for m in models}
        if widths != {opened.classes}:
            raise UserError(f"the members output {sorted(widths)} classes, the params say "
                            f"{opened.classes}", file=source.label)


def _check_width(x: Any, model: Any, data: Path, opened: PredictInput) -> None:
    expected = tuple(model.input_shape[1:])
    if tuple(x.shape[1:]) != expected:
        raise UserError(f"rows give the model input {tuple(x.shape[1:])}, the members "
                        f"expect {expected}" + (f"; expected {opened.expected}"
                                                if opened.expected else ""), file=data)
