"""The Keras training loop the built-in benchmarks share: seeding, threads, Horovod data
parallelism, per-epoch checkpoints written atomically (rank 0), resume from the last
checkpoint, and a plain history."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import (
    EarlyStopping,
    TrainContext,
    atomic_write_json,
    check_stop,
    keras_callbacks,
)
from candle_benchmarks._base import OPTIMIZERS
from candle_benchmarks._horovod import Distribution, current, use, weights_digest
from candle_benchmarks._uq import UQConfig, predict, transform_training_set


@dataclass
class Arrays:
    """Whole-job data. NumPy arrays are sharded by rank in `fit`; a benchmark that passes
    Keras Sequences shards them itself and says how many training samples all ranks hold."""

    x_train: NDArray[Any]
    y_train: NDArray[Any]
    x_val: NDArray[Any]
    y_val: NDArray[Any]
    train_samples: int | None = None
    # UQ and CV: what a job saves besides its metrics (rank 0, after training).
    kind: str = "classification"  # one-hot classes, or "regression"
    predict_x: Any = None  # the whole test set (a Sequence: its batches); default x_val
    predict_y: NDArray[Any] | None = None  # its targets (class labels); default from y_val
    split_output: Callable[[NDArray[np.float32]], dict[str, Any]] | None = None
    fold_assignment: NDArray[np.int64] | None = None  # CV: the fold of each training sample
    training_set: dict[str, Any] | None = None  # UQ: what a Sequence benchmark did to its rows
    # sha256 of the job's training data before UQ transforms and sharding; default: of
    # x_train and y_train (NumPy). A Sequence benchmark computes its own.
    data_digest: str | None = None


def data_digest(*arrays: Any) -> str:
    """sha256 (hex) of the arrays' bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def configure_tensorflow(ctx: TrainContext) -> Any:
    """Import TF quietly, pin threads (several jobs share a node) and seed everything."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if ctx.threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(ctx.threads)
        tf.config.threading.set_inter_op_parallelism_threads(ctx.threads)
    if ctx.size > 1 and not current().active:
        use(Distribution.start(ctx.rank, ctx.size))
    tf.keras.utils.set_random_seed(ctx.seed)  # same on every rank: identical initial weights
    return tf


def make_optimizer(tf: Any, params: dict[str, Any]) -> Any:
    """The params' optimizer; under Horovod wrapped, with the learning rate scaled by the
    number of ranks unless ``scale_lr_by_ranks`` is false."""
    dist = current()
    name = str(params["optimizer"])
    learning_rate = dist.learning_rate(float(params["learning_rate"]),
                                       bool(params.get("scale_lr_by_ranks", True)))
    optimizer = getattr(tf.keras.optimizers, OPTIMIZERS[name])
    return dist.optimizer(optimizer(learning_rate=learning_rate))


class Checkpoints:
    """``ckpt/epoch-NNNN.keras`` + ``ckpt/state.json`` in the job directory.

    The state file is written (atomically) after the model file is complete, so a kill at
    any moment leaves either the previous checkpoint or the new one, never a torn one.
    """

    def __init__(self, job_dir: Path, keep: int) -> None:
        self.dir = Path(job_dir) / "ckpt"
        self.keep = max(1, keep)

    def latest(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return state if (self.dir / state["file"]).is_file() else None

    def save(self, model: Any, epoch: int, history: dict[str, list[float]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:04d}.keras"
        self._save_model(model, name)
        monitor = "val_loss" if "val_loss" in history else "loss"
        best = self.best()
        value = history.get(monitor, [float("nan")])[-1]
        if best is None or value < best["value"]:
            self._save_model(model, "best.keras")
            atomic_write_json(self.dir / "best.json",
                              {"epoch": epoch, "monitor": monitor, "value": value})
        atomic_write_json(self.dir / "state.json",
                          {"epoch": epoch, "file": name, "history": history})
        kept = sorted(self.dir.glob("epoch-*.keras"))
        for old in kept[: -self.keep]:
            old.unlink(missing_ok=True)

    def _save_model(self, model: Any, name: str) -> None:
        tmp = self.dir / f".{name}.tmp.keras"
        model.save(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.dir / name)

    def best(self) -> dict[str, Any] | None:
        """The lowest val_loss (or loss) seen so far, kept as best.keras beside the last N."""
        try:
            data: dict[str, Any] = json.loads((self.dir / "best.json").read_text())
        except (OSError, ValueError):
            return None
        return data

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def fit(
    tf: Any, model: Any, data: Arrays, params: dict[str, Any], ctx: TrainContext
) -> dict[str, Any]:
    """Train (resuming if a checkpoint exists) and return metrics + per-epoch history.

    Under Horovod every rank runs this: each on its shard, in lock-step; rank 0 alone
    writes checkpoints, and rank 0 alone decides what to resume from.
    """
    dist = current()
    mode = params.get("ckpt_restart_mode", "auto")
    ckpt = Checkpoints(Path(ctx.job_dir), int(params.get("ckpt_keep_limit", 2)))
    history: dict[str, list[float]] = {}
    initial_epoch = 0
    state = dist.bcast(ckpt.latest() if mode != "off" and dist.rank == 0 else None)
    if mode == "required" and state is None:
        raise RuntimeError(f"ckpt_restart_mode=required but no checkpoint in {ckpt.dir}")
    if state is not None:
        model = tf.keras.models.load_model(ckpt.dir / state["file"],
                                           custom_objects=dist.custom_objects(tf))
        initial_epoch = int(state["epoch"])
        history = {k: list(v) for k, v in state["history"].items()}
    epochs = int(params["epochs"])
    # Early stopping decided from the whole history: a resumed job replays the restored
    # epochs first (and trains no further if they already say stop).
    stopper = EarlyStopping.from_params(params)
    stopper.replay(history)
    digest = data.data_digest
    if digest is None and dist.rank == 0 and isinstance(data.x_train, np.ndarray):
        digest = data_digest(data.x_train, data.y_train)
    uq = UQConfig.of(ctx.uq)
    whole = data  # rank 0 predicts on the whole test set, not its shard
    train_samples = data.train_samples
    training_set = data.training_set
    if isinstance(data.x_train, np.ndarray):
        x_train, y_train, training_set = transform_training_set(
            data.x_train, data.y_train, uq, params, ctx.seed)
        train_samples = len(x_train) // dist.size * dist.size
        data = replace(data, x_train=dist.shard(x_train, equal=True),
                       y_train=dist.shard(y_train, equal=True),
                       x_val=dist.shard(data.x_val, equal=False),
                       y_val=dist.shard(data.y_val, equal=False))
    local_logs: dict[str, float] = {}

    class _LocalLogs(tf.keras.callbacks.Callback):  # type: ignore[misc]
        """This rank's own metrics, before MetricAverageCallback replaces them."""

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            local_logs.clear()
            local_logs.update({k: float(v) for k, v in (logs or {}).items()})

    class _Record(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            values = {k: float(v) for k, v in (logs or {}).items()}
            for key, value in values.items():
                history.setdefault(key, []).append(value)
            if dist.rank == 0:
                ckpt.save(self.model, epoch + 1, history)
            if ctx.on_epoch is not None:
                ctx.on_epoch(epoch + 1, values)
            # After the checkpoint: a walltime or preemption signal stops the job here,
            # every rank at the same epoch, and the next attempt resumes from this epoch.
            check_stop(epoch + 1, dist.size, dist.bcast)

    # Horovod's broadcast first, its metric average before anything reads metrics; the
    # training controls next (warm-up, the lr log, ReduceLROnPlateau and early stopping,
    # both replaying the restored history, with rank 0's decisions), so what they add to
    # the logs is recorded.
    controls = keras_callbacks(params, size=dist.size, history=history, tracker=stopper,
                               bcast=dist.bcast)
    callbacks = [*dist.callbacks_before(), _LocalLogs(), *dist.metric_average(), *controls,
                 *params.get("_extra_callbacks", []), _Record()]
    started = time.perf_counter()
    if initial_epoch < epochs and not stopper.should_stop:
        model.fit(
            data.x_train, data.y_train,
            validation_data=(data.x_val, data.y_val),
            batch_size=int(params["batch_size"]),
            epochs=epochs,
            initial_epoch=initial_epoch,
            shuffle=True,
            verbose=int(params.get("verbose", 0)) if dist.rank == 0 else 0,
            callbacks=callbacks,
        )
    train_seconds = time.perf_counter() - started
    metrics = {k: v[-1] for k, v in history.items() if v}
    # A model-size objective for multi-objective searches (metric: [val_loss, params_count]).
    metrics["params_count"] = float(model.count_params())
    result: dict[str, Any] = {
        "metrics": metrics,
        "history": history,
        "epochs_run": len(next(iter(history.values()), [])) - initial_epoch,
        "resumed_from_epoch": initial_epoch,
        "params_count": int(model.count_params()),
        "train_seconds": round(train_seconds, 3),
        "train_samples": train_samples,
        "learning_rate_used": float(tf.keras.backend.get_value(model.optimizer.learning_rate)),
        **stopper.record(epochs),  # best_epoch, stopped_early_at
    }
    if dist.active:
        # Also the job's barrier: rank 0 reports only once every rank has finished training.
        per_rank = dist.gather({"rank": dist.rank, "weights": weights_digest(model),
                                "local_metrics": dict(local_logs)})
        result["horovod"] = {"size": dist.size, "ranks": per_rank}
    if dist.rank == 0:
        latest = ckpt.latest()  # the model as trained at the end, for `candle predict`
        result["model_file"] = f"{ckpt.dir.name}/{latest['file']}" if latest else None
        result["data_digest"] = digest
        if uq is not None:
            result["predictions"] = predict_test_set(model, whole, uq)
            result["uq_training_set"] = training_set
        if whole.fold_assignment is not None:
            result["fold_assignment"] = whole.fold_assignment
    return result


def predict_test_set(model: Any, data: Arrays, uq: UQConfig) -> Any:
    """The trained model's predictions on the job's whole validation/test set."""
    x = data.predict_x if data.predict_x is not None else data.x_val
    y = data.predict_y
    if y is None:
        y = data.y_val.argmax(axis=1) if data.kind == "classification" else data.y_val
    return predict(model, x, np.asarray(y), data.kind, uq,
                   data.split_output)


def maxabs_scale(*arrays: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    """Scale all arrays by the column max |x| of their union (upstream MaxAbsScaler)."""
    scale = np.max(np.stack([np.abs(a).max(axis=0) for a in arrays]), axis=0)
    scale[scale == 0] = 1.0
    return [(a / scale).astype(np.float32) for a in arrays]
