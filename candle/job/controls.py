"""Training controls: early stopping, ReduceLROnPlateau and learning-rate warm-up.

One implementation for the built-in benchmarks and for users' models. `EarlyStopping` and
`ReduceLROnPlateau` decide from the whole history (so a job resumed from a checkpoint takes
the decisions it would have taken without the interruption); `keras_callbacks` gives the
Keras callbacks the built-ins train with. TensorFlow is imported only by `keras_callbacks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from candle.benchmark import TRAINING_PARAMS

_DEFAULTS = {p.name: p.default for p in TRAINING_PARAMS}


def _param(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    return _DEFAULTS[name] if value is None else value


def maximized(monitor: str) -> bool:
    """Whether higher is better for ``monitor``: accuracies and r2; lower for the rest."""
    return "acc" in monitor or "r2" in monitor


@dataclass
class EarlyStopping:
    """Framework-free early stopping: feed it each epoch's metrics, it says when to stop.

    ``update(epoch, metrics)`` returns True once ``patience`` epochs have passed without an
    improvement of ``monitor`` by more than ``min_delta`` (patience 0: never stops).
    ``best_epoch`` is the epoch (1-based) of the best value, ``stopped_epoch`` the epoch at
    which it said stop. Feed it a restored history with ``replay`` after a resume.
    """

    patience: int = 0
    min_delta: float = 0.0
    monitor: str = "val_loss"
    best: float | None = None
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    _higher: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError("early stopping: patience and min_delta must be >= 0")
        self._higher = maximized(self.monitor)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EarlyStopping:
        """From ``early_stopping_patience/min_delta/monitor`` (candle.api.TRAINING_PARAMS;
        their defaults where absent)."""
        return cls(patience=int(_param(params, "early_stopping_patience")),
                   min_delta=float(_param(params, "early_stopping_min_delta")),
                   monitor=str(_param(params, "early_stopping_monitor")))

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    @property
    def should_stop(self) -> bool:
        return self.stopped_epoch is not None

    def improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self._higher:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record epoch ``epoch`` (1-based); True if training should stop after it."""
        if self.monitor not in metrics:
            if not self.enabled:
                return False
            raise KeyError(f"early stopping monitors {self.monitor!r}, but the epoch's "
                           f"metrics are: {', '.join(sorted(metrics)) or 'none'}")
        value = float(metrics[self.monitor])
        if self.improves(value):
            self.best, self.best_epoch = value, epoch
        if (self.stopped_epoch is None and self.enabled and self.best_epoch is not None
                and epoch - self.best_epoch >= self.patience):
            self.stopped_epoch = epoch
        elif (self.stopped_epoch is None and self.enabled and self.best_epoch is None
              and epoch >= self.patience):
            self.stopped_epoch = epoch  # nothing but NaN for `patience` epochs
        return self.should_stop

    def replay(self, history: Mapping[str, Sequence[float]]) -> bool:
        """Feed a whole per-epoch history (epochs 1..n); True if it already says stop."""
        values = history.get(self.monitor, [])
        for i, value in enumerate(values):
            self.update(i + 1, {self.monitor: value})
        return self.should_stop

    def record(self, epochs: int) -> dict[str, int | None]:
        """What a job's result keeps: ``best_epoch`` and ``stopped_early_at`` (the epoch
        training stopped at, when that was before ``epochs``; else None)."""
        stopped = self.stopped_epoch if self.stopped_epoch is not None \
            and self.stopped_epoch < epochs else None
        return {"best_epoch": self.best_epoch, "stopped_early_at": stopped}


@dataclass
class ReduceLROnPlateau:
    """Framework-free ReduceLROnPlateau with Keras' semantics (monitor val_loss, mode min,
    cooldown 0): an epoch improves iff its value < best - ``min_delta``; otherwise ``wait``
    grows, and at ``patience`` (with the rate above ``min_lr``) the rate becomes
    max(rate × ``factor``, ``min_lr``) and ``wait`` restarts. Unlike Keras' callback, whose
    counter and best start afresh at every ``fit``, ``replay`` rebuilds them from a restored
    history, so a resumed job cuts the rate at the epochs it would have without the stop.
    """

    patience: int
    factor: float = 0.1
    min_delta: float = 1e-4
    min_lr: float = 0.0
    monitor: str = "val_loss"
    best: float = math.inf
    wait: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ReduceLROnPlateau:
        """From ``reduce_lr_patience/factor/min_delta`` (their defaults where absent)."""
        return cls(patience=int(_param(params, "reduce_lr_patience")),
                   factor=float(_param(params, "reduce_lr_factor")),
                   min_delta=float(_param(params, "reduce_lr_min_delta")))

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def update(self, metrics: Mapping[str, float], lr: float) -> float | None:
        """Record one epoch trained at rate ``lr``; the new rate if it is cut now, else
        None. An epoch without the monitor is skipped (as Keras does, with a warning)."""
        if not self.enabled or self.monitor not in metrics:
            return None
        value = float(metrics[self.monitor])
        if value < self.best - self.min_delta:  # NaN: False, counts as no improvement
            self.best, self.wait = value, 0
            return None
        self.wait += 1
        if self.wait >= self.patience and lr > self.min_lr:
            self.wait = 0
            return max(lr * self.factor, self.min_lr)
        return None

    def replay(self, history: Mapping[str, Sequence[float]]) -> None:
        """Feed a restored per-epoch history (its ``lr`` the rate each epoch trained at;
        the current rate itself comes back with the optimizer from the checkpoint)."""
        rates = history.get("lr", [])
        for i, value in enumerate(history.get(self.monitor, [])):
            self.update({self.monitor: value}, float(rates[i]) if i < len(rates) else math.inf)


def warmup_learning_rate(target: float, size: int, warmup_epochs: int, epoch: float) -> float:
    """Horovod's LearningRateWarmupCallback schedule (Goyal et al. 2017): from target/size
    up to ``target`` (the rank-scaled learning rate) over ``warmup_epochs``. ``epoch`` is
    the 0-based epoch plus the fraction of its batches done (batch b of n: ``e + (b+1)/n``);
    from ``warmup_epochs`` on, and at size 1, the rate is ``target``."""
    if warmup_epochs <= 0 or size <= 1 or epoch >= warmup_epochs:
        return target
    return target / size * (epoch * (size - 1) / warmup_epochs + 1)


def warmup_target(params: Mapping[str, Any], size: int) -> float | None:
    """The rate warm-up ramps to: ``learning_rate`` × ranks (unless scale_lr_by_ranks is
    false); None when params name no learning_rate."""
    if params.get("learning_rate") is None:
        return None
    base = float(params["learning_rate"])
    return base * size if bool(params.get("scale_lr_by_ranks", True)) else base


def keras_callbacks(
    params: Mapping[str, Any],
    *,
    size: int | None = None,
    history: Mapping[str, Sequence[float]] | None = None,
    tracker: EarlyStopping | None = None,
    bcast: Callable[[Any], Any] | None = None,
    learning_rate: float | None = None,
    plateau: ReduceLROnPlateau | None = None,
) -> list[Any]:
    """The Keras callbacks the built-ins train with, from ``params`` (TRAINING_PARAMS):

    warm-up (ranks > 1 and warmup_epochs > 0), an ``lr`` entry in every epoch's logs,
    ReduceLROnPlateau on val_loss (reduce_lr_patience > 0; decided by ``plateau``, or a new
    `ReduceLROnPlateau.from_params` that replays ``history``) and early stopping (decided
    by ``tracker``, or a new `EarlyStopping.from_params`; ``history``: a restored history
    to replay first). ``size``: the number of ranks (default ``params["size"]`` or 1);
    ``bcast``: rank 0's decisions to every rank (e.g. Horovod's or mpi4py's broadcast);
    ``learning_rate``: the warm-up's target (default learning_rate × ranks, see
    `warmup_target`). Put them after Horovod's MetricAverageCallback.
    """
    import tensorflow as tf

    ranks = int(size if size is not None else params.get("size") or 1)
    stopper = tracker if tracker is not None else EarlyStopping.from_params(params)
    if history and tracker is None:
        stopper.replay(history)
    backend = tf.keras.backend
    callbacks: list[Any] = []
    warmup = int(_param(params, "warmup_epochs"))
    target = learning_rate if learning_rate is not None else warmup_target(params, ranks)
    if warmup > 0 and ranks > 1:
        if target is None:
            raise ValueError("warmup_epochs needs the learning rate to ramp to: a "
                             "learning_rate param or keras_callbacks(learning_rate=...)")
        peak = float(target)

        class Warmup(tf.keras.callbacks.Callback):  # type: ignore[misc]
            """Sets the rate before each batch of the first ``warmup`` epochs (stateless
            in epoch and batch, so a resumed job continues the ramp where it was)."""

            epoch = 0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.epoch = epoch

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                if self.epoch >= warmup:
                    return  # after warm-up the rate is ReduceLROnPlateau's
                steps = max(1, int(self.params.get("steps") or 1))
                rate = warmup_learning_rate(peak, ranks, warmup,
                                            self.epoch + (batch + 1) / steps)
                backend.set_value(self.model.optimizer.learning_rate, rate)

        callbacks.append(Warmup())

    class LogLearningRate(tf.keras.callbacks.Callback):  # type: ignore[misc]
        """``lr``: the rate of the epoch's last batch (before any cut at its end)."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                logs["lr"] = float(backend.get_value(self.model.optimizer.learning_rate))

    callbacks.append(LogLearningRate())
    # upstream NT3/TC1: ReduceLROnPlateau(monitor='val_loss', factor=0.1, patience=10,
    # epsilon=0.0001, cooldown=0, min_lr=0), decided here from the whole history.
    reducer = plateau
    if reducer is None:
        reducer = ReduceLROnPlateau.from_params(params)
        reducer.replay(history or {})
    if reducer.enabled:
        cutter = reducer

        class ReduceLR(tf.keras.callbacks.Callback):  # type: ignore[misc]
            """Cuts the rate at the epoch's end (from the averaged metrics under Horovod);
            rank 0's decision, and its tracker's state, on every rank."""

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                rate = self.model.optimizer.learning_rate
                new = cutter.update(dict(logs or {}), float(backend.get_value(rate)))
                if bcast is not None:
                    new, cutter.best, cutter.wait = bcast((new, cutter.best, cutter.wait))
                if new is not None:
                    backend.set_value(rate, new)

        callbacks.append(ReduceLR())

    class Stop(tf.keras.callbacks.Callback):  # type: ignore[misc]
        """Early stopping from the whole history (with patience 0 it only keeps the best
        epoch); rank 0's decision on every rank."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            stop = stopper.update(epoch + 1, dict(logs or {}))
            if stopper.enabled and bcast is not None:
                stop = bool(bcast(stop))
                if stop and stopper.stopped_epoch is None:
                    stopper.stopped_epoch = epoch + 1
            if stop:
                self.model.stop_training = True

    callbacks.append(Stop())
    return callbacks
