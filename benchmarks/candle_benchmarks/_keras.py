"""The Keras training loop the built-in benchmarks share: seeding, threads, Horovod data
parallelism, checkpoints written atomically (rank 0; at most every ``ckpt_every``, always
on a drain; see `Checkpoints`), resume from the last checkpoint, and a plain history."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import (
    EarlyStopping,
    Interrupted,
    TrainContext,
    atomic_write_json,
    check_stop,
    keras_callbacks,
)
from candle_benchmarks._base import OPTIMIZERS
from candle_benchmarks._horovod import (
    Distribution,
    current,
    data_digest,
    use,
    weights_digest,
)
from candle_benchmarks._uq import UQConfig, predict, transform_training_set

log = logging.getLogger(__name__)

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
    fold_groups: NDArray[Any] | None = None  # CV/designs: each sample's group label
    training_set: dict[str, Any] | None = None  # UQ: what a Sequence benchmark did to its rows
    # sha256 of the job's training data before UQ transforms and sharding; default: of
    # x_train and y_train (NumPy). A Sequence benchmark computes its own.
    data_digest: str | None = None
    # Sets evaluated (rank 0) after training, each metric reported as "<prefix>_<metric>":
    # e.g. "test" (a design's holdout) or "test_GDSC" (a test study); prefix -> (x, y), or
    # (Sequence, None) for a Sequence yielding its own targets.
    test_sets: dict[str, tuple[Any, Any]] = field(default_factory=dict)


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


CKPT_OVERHEAD = 0.02  # ckpt_every=auto: saves take at most this share of the job's time
# ckpt_every=auto, before this process's first save: its cost is guessed from its bytes at
# this rate (fsynced writes of a full-width NT3 checkpoint ran at 62-67 MB/s here; a
# slower filesystem only delays the first save: later ones use the measured time).
ASSUMED_WRITE_BYTES_PER_S = 50e6


def checkpoint_interval(value: Any) -> tuple[str, float]:
    """``ckpt_every``: ("auto", 0), ("epochs", N) from "N" (0: only on a drain) or
    ("seconds", S) from "Ss"."""
    text = str(value).strip().lower()
    try:
        if text == "auto":
            return "auto", 0.0
        if text.endswith("s"):
            seconds = float(text[:-1])
            if seconds > 0:
                return "seconds", seconds
        elif int(text) >= 0:
            return "epochs", float(int(text))
    except ValueError:
        pass
    raise ValueError(f"ckpt_every must be 'auto', a number of epochs (e.g. 1; 0: only on a "
                     f"drain) or of seconds (e.g. 300s), not {value!r}")


def optimizer_state_matters(optimizer: Any) -> bool:
    """Whether resuming exactly needs the optimizer's slot variables: not for SGD without
    momentum (Keras 2.15 still keeps a momentum slot, but at momentum 0 every update is
    ``w -= lr * g`` whatever it holds); yes for Adam, RMSprop, SGD with momentum, ...
    The step count and the learning rate are scalars and always kept (state.json)."""
    import tensorflow as tf

    if isinstance(optimizer, tf.keras.optimizers.SGD):
        return float(optimizer.momentum) != 0.0
    return len(optimizer.variables) > 1  # more than the step count


class Checkpoints:
    """What a resume needs, in ``ckpt/`` of the job directory, and no more:

    - while a job trains: ``epoch-NNNN.weights.npz`` (the model's weights only, as
      ``get_weights`` lists them: a resume rebuilds the model from its params; Keras' own
      ``save_weights`` and ``.keras`` files would add every optimizer slot, even SGD's
      unused momentum at momentum 0), ``epoch-NNNN.optimizer.npz`` (the optimizer's
      variables, only where `optimizer_state_matters`) and ``state.json`` (the epoch, the
      history, the learning rate and step count). ``ckpt_every`` says how often
      (`checkpoint_interval`); a drain always saves first, so it never repeats an epoch.
    - once it is done: ``model.keras`` alone (the model as trained at the end, the one the
      result's metrics describe, without optimizer state: what `candle predict` and
      `candle train --from` load), about 1× the weights. Its state (the final
      ``state.json``: epoch, history, ...) rides inside it, as the zip member
      ``candle-state.json`` that Keras' loader ignores: a job killed after it was written
      but before its result still reports without training again, and a done job keeps
      one file here, not two (issue 18: at most 5 files per finished job).

    Every file is written to a temporary name, fsynced and renamed; state.json (or the
    final model, with its state) is written last and older files are removed only after
    it, so a kill at any moment leaves the previous checkpoint or the new one, never a torn
    one.
    """

    FINAL = "model.keras"
    FINAL_STATE = "candle-state.json"  # the final state, a member of model.keras' zip

    def __init__(self, job_dir: Path, keep: int, every: Any = "auto") -> None:
        self.dir = Path(job_dir) / "ckpt"
        self.keep = max(1, keep)
        self.mode, self.every = checkpoint_interval(every)
        self.last_epoch = 0
        self.started = self.last_end = time.monotonic()
        self.save_seconds = 0.0  # how long the last save took
        self.spent = 0.0  # seconds all saves of this process took
        self.saves = 0  # by this process
        self.saved_bytes = 0  # bytes written by this process, all saves together
        self.expected_bytes = 0  # of one save (`expect`): auto's guess before the first
        # Kept in every state written (a resume reads it back): e.g. the init record.
        self.extra: dict[str, Any] = {}
        # restore_best_weights: the epochs of the best-weights files to keep, the newest
        # (maybe not yet covered by a checkpoint) and the one the last checkpoint's history
        # calls best (what a resume from it needs).
        self.best_epoch: int | None = None
        self.committed_best: int | None = None

    def latest(self) -> dict[str, Any] | None:
        """The newest complete checkpoint's state (the final model's on a tie), or None."""
        found: list[dict[str, Any]] = []
        final = final_state(self.dir)
        if final is not None:
            found.append(final)
        try:
            state = json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict) and all(
                (self.dir / f).is_file() for f in (state.get("file"), state.get("optimizer"))
                if f):
            found.append(state)
        return max(found, key=lambda s: (int(s.get("epoch", 0)), bool(s.get("final"))),
                   default=None)

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch``'s end is time for a periodic checkpoint."""
        if self.mode == "epochs":
            return self.every > 0 and epoch - self.last_epoch >= self.every
        elapsed = time.monotonic() - self.last_end
        if self.mode == "seconds":
            return elapsed >= self.every
        # auto: save when, counting this save (the last one's time, or a guess from its
        # bytes before any), all saves since this process started stay within
        # CKPT_OVERHEAD of its time. A short job may save only on a drain and at its end.
        cost = self.save_seconds if self.saves else (
            self.expected_bytes / ASSUMED_WRITE_BYTES_PER_S)
        total = time.monotonic() - self.started
        return self.spent + cost <= CKPT_OVERHEAD * (total + cost)

    def expect(self, model: Any) -> None:
        """Size ``model``'s checkpoints for ``ckpt_every=auto``'s first decision."""
        weights = sum(int(np.prod(w.shape)) * w.dtype.size for w in model.weights)
        stateful = optimizer_state_matters(model.optimizer)
        self.expected_bytes = weights * (3 if stateful else 1)  # Adam: 2 slots per weight

    def save(self, model: Any, epoch: int, history: dict[str, list[float]]) -> None:
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:04d}.weights.npz"
        weights = model.get_weights()
        self._write(name, lambda path: _save_arrays(path, weights))
        optimizer = model.optimizer
        slots = None
        if optimizer_state_matters(optimizer):
            slots = f"epoch-{epoch:04d}.optimizer.npz"
            values = [np.asarray(v.numpy()) for v in optimizer.variables]
            self._write(slots, lambda path: _save_arrays(path, values))
        self._commit(epoch, name, slots, history, optimizer)
        self.committed_best = self.best_epoch
        self.prune_best()
        kept = sorted(self.dir.glob("epoch-*.weights.npz"))
        for old in kept[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_name(old.name.replace(".weights.", ".optimizer.")).unlink(
                missing_ok=True)
        self.last_epoch = epoch
        self.last_end = time.monotonic()
        self.save_seconds = self.last_end - started
        self.spent += self.save_seconds
        self.saves += 1

    def finish(self, model: Any, epoch: int, history: dict[str, list[float]]) -> str:
        """A done job keeps its final model only (``model.keras``, no optimizer state);
        the path the result names, relative to the job directory."""
        import tensorflow as tf

        self.dir.mkdir(parents=True, exist_ok=True)
        # An uncompiled clone: a .keras file of the compiled model would hold the
        # optimizer's slots too (include_optimizer is not an option of the format).
        bare = tf.keras.models.clone_model(model)
        bare.set_weights(model.get_weights())
        state = {**self.extra,
                 **self._state(epoch, self.FINAL, None, history, model.optimizer, final=True)}

        def write(path: Path) -> None:
            bare.save(path)
            with zipfile.ZipFile(path, "a") as archive:
                archive.writestr(self.FINAL_STATE, json.dumps(state))

        self._write(self.FINAL, write)
        for old in self.dir.iterdir():
            if old.name != self.FINAL:
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
        return f"{self.dir.name}/{self.FINAL}"

    def restore(self, model: Any, state: dict[str, Any]) -> None:
        """Load a checkpoint into ``model``, freshly built from the job's params: weights,
        then the optimizer's variables (where saved), step count and learning rate."""
        import tensorflow as tf

        source = self.dir / state["file"]
        if source.suffix == ".keras":  # a done job's final model (its epochs raised)
            weights = tf.keras.models.load_model(source, compile=False).get_weights()
        else:
            with np.load(source) as saved:
                weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        model.set_weights(weights)
        optimizer = model.optimizer
        if state.get("optimizer"):
            optimizer.build(model.trainable_variables)
            with np.load(self.dir / state["optimizer"]) as saved:
                values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            variables = list(optimizer.variables)
            shapes = [tuple(v.shape) for v in variables]
            if [tuple(v.shape) for v in values] != shapes:
                raise RuntimeError(f"{state['optimizer']}: its optimizer state does not fit "
                                   "this model (were its params changed?)")
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        if "iterations" in state:
            optimizer.iterations.assign(int(state["iterations"]))
        if "learning_rate" in state:
            tf.keras.backend.set_value(optimizer.learning_rate, float(state["learning_rate"]))

    def _commit(self, epoch: int, name: str, slots: str | None, history: dict[str, Any],
                optimizer: Any) -> None:
        atomic_write_json(self.dir / "state.json",
                          {**self.extra, **self._state(epoch, name, slots, history, optimizer)})

    BEST = "best-{epoch:04d}.weights.npz"

    def save_best(self, model: Any, epoch: int) -> None:
        """restore_best_weights: ``model``'s weights as of ``epoch`` (a new best), written
        atomically beside the checkpoints so that a resumed attempt still has them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        weights = model.get_weights()
        self._write(self.BEST.format(epoch=epoch), lambda path: _save_arrays(path, weights))
        self.best_epoch = epoch
        self.prune_best()

    def load_best(self, model: Any, epoch: int) -> bool:
        """Load the best weights saved at ``epoch`` into ``model``; False if there are none."""
        path = self.dir / self.BEST.format(epoch=epoch)
        try:
            with np.load(path) as saved:
                weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except (OSError, ValueError):
            return False
        model.set_weights(weights)
        return True

    def prune_best(self) -> None:
        """Remove best-weights files but the newest and the last checkpoint's best (one
        of a lost future, newer than the checkpoint a resume starts from, goes too)."""
        keep = {self.BEST.format(epoch=e) for e in (self.best_epoch, self.committed_best)
                if e is not None}
        if self.dir.is_dir():
            for old in self.dir.glob("best-*.weights.npz"):
                if old.name not in keep:
                    old.unlink(missing_ok=True)

    @staticmethod
    def _state(epoch: int, name: str, slots: str | None, history: dict[str, Any],
               optimizer: Any, final: bool = False) -> dict[str, Any]:
        import tensorflow as tf

        return {"epoch": epoch, "file": name, "optimizer": slots, "final": final,
                "learning_rate": float(tf.keras.backend.get_value(optimizer.learning_rate)),
                "iterations": int(tf.keras.backend.get_value(optimizer.iterations)),
                "history": history}

    def _write(self, name: str, write: Callable[[Path], Any]) -> None:
        tmp = self.dir / f".{name}.tmp{Path(name).suffix}"  # Keras: format by suffix
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        self.saved_bytes += tmp.stat().st_size
        os.replace(tmp, self.dir / name)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def start_from(tf: Any, model: Any, params: dict[str, Any], dist: Any) -> dict[str, Any]:
    """Population-based training: load another job's last checkpoint (``init_from``, a job
    directory): its weights and optimizer state (slots and step count), keeping this job's
    own learning rate (its hyperparameters are the point of the new segment). Returns what
    was loaded, with checksums, for the result."""
    source = Checkpoints(Path(params["init_from"]), keep=1)
    state = dist.bcast(source.latest() if dist.rank == 0 else None)
    if state is None or state.get("final"):
        raise RuntimeError(f"{params['init_from']}: no checkpoint with optimizer state to "
                           "start from (was it a segment with keep_state?)")
    own_lr = float(tf.keras.backend.get_value(model.optimizer.learning_rate))
    source.restore(model, state)  # every rank: the files rank 0 chose
    tf.keras.backend.set_value(model.optimizer.learning_rate, own_lr)
    return {"from": str(params["init_from"]), "epoch": int(state["epoch"]),
            **state_digests(model, bool(state.get("optimizer")))}


def load_init_weights(tf: Any, model: Any, path: str) -> dict[str, Any]:
    """A leave-out tree's child: its parent's weights (the model file a done job keeps,
    `Checkpoints.finish`), with this job's fresh optimizer. Every rank loads the file.
    Returns the result's ``init`` record: the file and the weights' checksum as loaded."""
    try:
        weights = tf.keras.models.load_model(path, compile=False).get_weights()
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path}: cannot load the weights to start from: {exc}") from None
    try:
        model.set_weights(weights)
    except ValueError as exc:
        raise RuntimeError(f"{path}: its weights do not fit this model (were its params "
                           f"changed?): {exc}") from None
    return {"from": str(path), "weights": weights_digest(model)}


def track_best(model: Any, ckpt: Checkpoints, state: dict[str, Any] | None,
               best: int | None) -> None:
    """restore_best_weights at the start of an attempt (rank 0): a fresh start keeps no
    best-weights file of an earlier one; a resume keeps the one of its history's best
    epoch (a done job's model.keras holds those weights where it restored them)."""
    ckpt.best_epoch = ckpt.committed_best = best if state is not None else None
    if state is not None and state.get("final") and best is not None \
            and state.get("restored_best_epoch") == best:
        ckpt.save_best(model, best)
    ckpt.prune_best()


def state_digests(model: Any, optimizer: bool | None = None) -> dict[str, str | None]:
    """Checksums of the weights and of the optimizer's variables (None where it keeps no
    state that matters): what a segment saved, and what the next one loaded, must match."""
    if optimizer is None:
        optimizer = optimizer_state_matters(model.optimizer)
    slots = [np.asarray(v.numpy()) for v in model.optimizer.variables] if optimizer else []
    return {"weights": weights_digest(model),
            "optimizer": data_digest(*slots)[:16] if slots else None}


def final_state(ckpt_dir: Path) -> dict[str, Any] | None:
    """The state a done job's ``model.keras`` carries (Checkpoints.finish), or None."""
    try:
        with zipfile.ZipFile(Path(ckpt_dir) / Checkpoints.FINAL) as archive:
            state = json.loads(archive.read(Checkpoints.FINAL_STATE))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return state if isinstance(state, dict) else None


def _save_arrays(path: Path, values: list[NDArray[Any]]) -> None:
    with path.open("wb") as handle:
        np.savez(handle, *values)


def fit(
    tf: Any, model: Any, data: Arrays, params: dict[str, Any], ctx: TrainContext
) -> dict[str, Any]:
    """Train (resuming if a checkpoint exists) and return metrics + per-epoch history.

    Under Horovod every rank runs this: each on its shard, in lock-step; rank 0 alone
    writes checkpoints, and rank 0 alone decides what to resume from.
    """
    dist = current()
    mode = params.get("ckpt_restart_mode", "auto")
    ckpt = Checkpoints(Path(ctx.job_dir), int(params.get("ckpt_keep_limit", 1)),
                       params.get("ckpt_every", "auto"))
    history: dict[str, list[float]] = {}
    initial_epoch = 0
    state = dist.bcast(ckpt.latest() if mode != "off" and dist.rank == 0 else None)
    if mode == "required" and state is None:
        raise RuntimeError(f"ckpt_restart_mode=required but no checkpoint in {ckpt.dir}")
    init: dict[str, Any] | None = None
    if state is not None:
        ckpt.restore(model, state)  # every rank: the files rank 0 chose
        initial_epoch = ckpt.last_epoch = int(state["epoch"])
        history = {k: list(v) for k, v in state["history"].items()}
    elif params.get("init_from"):
        init = start_from(tf, model, params, dist)
        initial_epoch = ckpt.last_epoch = int(params.get("start_epoch") or 0)
    elif ctx.init_weights:
        init = load_init_weights(tf, model, ctx.init_weights)
    if state is not None and isinstance(state.get("init"), dict):
        init = state["init"]  # what the first attempt started from
    if init is not None and not params.get("init_from"):
        ckpt.extra["init"] = init  # every state keeps it: a resumed attempt reports it too
    trained_before = len(next(iter(history.values()), []))
    ckpt.expect(model)
    epochs = int(params["epochs"])
    # Early stopping decided from the whole history: a resumed job replays the restored
    # epochs first (and trains no further if they already say stop).
    stopper = EarlyStopping.from_params(params)
    stopper.replay(history)
    restore_best = bool(params.get("restore_best_weights", False))
    if restore_best and dist.rank == 0:
        track_best(model, ckpt, state, stopper.best_epoch)
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
            # Periodic checkpoints (ckpt_every); none after the last epoch: the final model
            # is saved once training ends.
            last = epoch + 1 >= epochs or bool(self.model.stop_training)
            saved = dist.rank == 0 and not last and ckpt.due(epoch + 1)
            if saved:
                ckpt.save(self.model, epoch + 1, history)
            if ctx.on_epoch is not None:
                ctx.on_epoch(epoch + 1, values)
            # A walltime or preemption signal stops the job here, every rank at the same
            # epoch, after a checkpoint of this epoch whatever ckpt_every says: the next
            # attempt resumes from it and trains no epoch twice.
            try:
                check_stop(epoch + 1, dist.size, dist.bcast)
            except Interrupted:
                if dist.rank == 0 and not saved:
                    ckpt.save(self.model, epoch + 1, history)
                dist.bcast(None)  # no rank exits (and ends the job) before rank 0 saved
                raise

    # Horovod's broadcast first, its metric average before anything reads metrics; the
    # training controls next (warm-up, the lr log, ReduceLROnPlateau and early stopping,
    # both replaying the restored history, with rank 0's decisions), so what they add to
    # the logs is recorded.
    class _BestWeights(tf.keras.callbacks.Callback):  # type: ignore[misc]
        """restore_best_weights: rank 0 saves the weights of every new best epoch (the
        early-stopping tracker's, updated by the controls before it)."""

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if dist.rank == 0 and stopper.best_epoch == epoch + 1:
                ckpt.save_best(self.model, epoch + 1)

    controls = keras_callbacks(params, size=dist.size, history=history, tracker=stopper,
                               bcast=dist.bcast)
    best_saver = [_BestWeights()] if restore_best else []
    callbacks = [*dist.callbacks_before(), _LocalLogs(), *dist.metric_average(), *controls,
                 *best_saver, *params.get("_extra_callbacks", []), _Record()]
    started = time.perf_counter()
    if initial_epoch < epochs and not stopper.should_stop:
        x_fit: Any = data.x_train
        y_fit: Any = data.y_train
        batch: int | None = int(params["batch_size"])
        steps: int | None = None
        tuned = (training_dataset(tf, x_fit, y_fit, int(params["batch_size"]),
                                  epochs - initial_epoch)
                 if isinstance(x_fit, np.ndarray) else None)
        if tuned is not None:  # see training_dataset: no idle stall at the end of fit
            (x_fit, steps), y_fit, batch = tuned, None, None
        model.fit(
            x_fit, y_fit,
            steps_per_epoch=steps,
            validation_data=(data.x_val, data.y_val),
            batch_size=batch,
            epochs=epochs,
            initial_epoch=initial_epoch,
            shuffle=True,
            verbose=int(params.get("verbose", 0)) if dist.rank == 0 else 0,
            callbacks=callbacks,
        )
    train_seconds = time.perf_counter() - started
    metrics = {k: v[-1] for k, v in history.items() if v}
    best_epoch = stopper.best_epoch if restore_best else None
    if best_epoch is not None:  # the metrics of the weights kept
        metrics = {k: v[best_epoch - 1] for k, v in history.items() if len(v) >= best_epoch}
    # A model-size objective for multi-objective searches (metric: [val_loss, params_count]).
    metrics["params_count"] = float(model.count_params())
    result: dict[str, Any] = {
        "metrics": metrics,
        "history": history,
        "epochs_run": len(next(iter(history.values()), [])) - trained_before,
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
    if init is not None:
        result["init"] = init
    if dist.rank == 0:
        # The model as trained at the end (the one the metrics describe), for `candle
        # predict` and `candle train --from`: all a done job keeps of its checkpoints.
        done = initial_epoch + result["epochs_run"]
        trained_no_more = state is not None and bool(state.get("final")) \
            and done == initial_epoch
        if best_epoch is not None and best_epoch != done and not trained_no_more \
                and not ckpt.load_best(model, best_epoch):
            log.warning("restore_best_weights: no saved weights of epoch %d in %s; keeping "
                        "the last epoch's", best_epoch, ckpt.dir)
            result["metrics"] = {**{k: v[-1] for k, v in history.items() if v},
                                 "params_count": metrics["params_count"]}
            best_epoch = None
        if best_epoch is not None:
            result["restored_best_epoch"] = best_epoch
            ckpt.extra["restored_best_epoch"] = best_epoch
        if trained_no_more and state is not None:
            result["model_file"] = f"{ckpt.dir.name}/{state['file']}"  # trained no more
        elif params.get("keep_state"):
            # A segment of population-based training: the next segment (its own member's,
            # or another's that exploits it) starts from its weights and optimizer state.
            ckpt.save(model, done, history)
            result["state_file"] = f"{ckpt.dir.name}/state.json"
            result["saved"] = state_digests(model)
        else:
            result["model_file"] = ckpt.finish(model, done, history)
        if ctx.design and ctx.design.get("node") and "model_file" in result:
            result["final_weights"] = weights_digest(model)  # its children start from it
        result["data_digest"] = digest
        for prefix, (x, y) in whole.test_sets.items():
            batch = int(params["batch_size"]) if isinstance(x, np.ndarray) else None
            values = model.evaluate(x, y, batch_size=batch, verbose=0, return_dict=True)
            result["metrics"].update({f"{prefix}_{k}": float(v) for k, v in values.items()})
        if uq is not None:
            result["predictions"] = predict_test_set(model, whole, uq)
            result["uq_training_set"] = training_set
        if whole.fold_assignment is not None:
            result["fold_assignment"] = whole.fold_assignment
        if whole.fold_groups is not None:
            result["fold_groups"] = whole.fold_groups
    return result


def training_dataset(tf: Any, x: NDArray[Any], y: NDArray[Any], batch_size: int,
                     epochs: int) -> tuple[Any, int] | None:
    """Keras' own pipeline for NumPy training data (the same batches and per-epoch shuffle:
    the same weights, checked on 1 and 2 ranks) with tf.data autotuning off; and its steps
    per epoch.

    Why (issue 19): with autotuning on, the training iterator's autotune thread (TF 2.15
    ``Model::OptimizeLoop``) can miss the cancellation when fit deletes the iterator and
    sleep out its period, which doubles up to 60 s the longer the fit runs: fit then returned
    up to 28 s after its last epoch (2-rank TC1 here, 7 of 8 fits), idle, in
    ``RootDataset::Iterator::~Iterator`` waiting for that thread. Without autotuning there
    is no such thread; in-memory slicing needs no tuning. None where Keras differs."""
    try:
        from keras.src.engine import data_adapter
    except ImportError:  # another Keras: None, fit takes the arrays (autotuned)
        return None
    adapter = data_adapter.TensorLikeDataAdapter(x, y, batch_size=batch_size, epochs=epochs,
                                                 shuffle=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    return adapter.get_dataset().with_options(options), int(adapter.get_size())


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
