"""The benchmark contract: typed parameters with defaults, the metrics a benchmark
reports, the context its training gets, and where candle finds the built-ins.

It imports nothing from candle, so every layer (spec, plan, job, reporting) may use it and
`candle validate` stays free of TensorFlow. Model code gets these names from `candle.api`.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARAM_TYPES = ("int", "float", "str", "bool", "ints", "floats", "strs")
# What CV folds and leave-out parts may group samples by: no group is in two folds.
GROUP_KINDS = ("cell", "drug", "cell_drug", "study")
DESIGNS = ("groups", "holdout", "studies", "stages")
# TrainContext.design's keys: groups (a GROUP_KINDS name or None: the benchmark's default),
# holdout (fraction of groups held out of every fold, 0: none), seed (the sweep's cv.seed:
# the holdout and the tree's parts, the same for every repeat), train_studies and
# test_studies (lists; empty: not cross-study), node (the leave-out tree path, e.g. [2, 1]:
# part 2 of the data left out, then part 1 of what remained; None: not a tree), children
# (parts per level) and split (the GROUP_KINDS name the parts are made of).
DESIGN_KEYS = ("groups", "holdout", "seed", "train_studies", "test_studies", "node",
               "children", "split")


class ParamError(ValueError):
    """A parameter value that does not fit its declared type."""


@dataclass(frozen=True)
class Param:
    """One benchmark parameter: name, type (one of PARAM_TYPES), default and help."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    def coerce(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise ParamError."""
        scalar = self.type.rstrip("s") if self.type.endswith("s") and self.type != "str" else ""
        if scalar:
            if value is None:
                return None
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = [value]  # `--set dense=8`: a one-element list
            if not isinstance(value, list | tuple):
                raise ParamError(f"expected a list of {scalar}, got {value!r}")
            return [_coerce_scalar(scalar, v) for v in value]
        out = _coerce_scalar(self.type, value)
        if self.choices is not None and out not in self.choices:
            raise ParamError(f"expected one of {', '.join(self.choices)}, got {out!r}")
        return out


def _coerce_scalar(kind: str, value: Any) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ParamError(f"expected true or false, got {value!r}")
    if kind in ("int", "float"):
        return _coerce_number(kind, value)
    if kind == "str":
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ParamError(f"expected a string, got {value!r}")
    raise ParamError(f"unknown parameter type {kind!r}")


def _coerce_number(kind: str, value: Any) -> int | float:
    """int: integers, integral floats, numeric strings; float: any number. Never a bool."""
    if not isinstance(value, bool):
        if kind == "int" and isinstance(value, int):
            return value
        if kind == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind == "float" and isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value) if kind == "int" else float(value)
    raise ParamError(f"expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}")


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's identity and parameter table; `runner` names its training module."""

    name: str
    description: str
    params: tuple[Param, ...]
    runner: str  # "module" holding `train(params, ctx) -> dict`, imported lazily
    metrics: tuple[str, ...] = ()  # every metric a job reports (what a sweep may select)
    # Raise it when a change makes the same params compute something else (a new default
    # data split, another loss): it is part of every job id, so old results are not reused.
    version: int = 1
    # "module" or "module:function" reading new samples for `candle predict` (see
    # PredictInput); "" when the benchmark has none.
    predictor: str = ""
    # Params that may change mid-training (population-based training): a job that starts
    # from another job's checkpoint (init_from, start_epoch) applies its own values of these.
    mutable: tuple[str, ...] = ()
    # The sample designs its data honours beyond plain k-fold (TrainContext.design): any of
    # "groups" (and which: GROUP_KINDS it can group by, listed in ``groups``), "holdout",
    # "studies" (cross-study), "stages" (the leave-out tree). A sweep asking for one it
    # lacks is refused. A user's training function gets the design in its params.
    designs: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    _index: dict[str, Param] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({p.name: p for p in self.params})

    def param(self, name: str) -> Param | None:
        return self._index.get(name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def train_function(self) -> Callable[..., Any]:
        module = importlib.import_module(self.runner)
        fn: Callable[..., Any] = module.train
        return fn


# Training controls every built-in takes (and a user's Benchmark may include): they change
# what a job computes, so they are params (searchable, part of every job id). A sweep's
# `training:` section is the readable way to set them (candle.spec maps it onto these).
TRAINING_PARAMS: tuple[Param, ...] = (
    Param("early_stopping_patience", "int", 0,
          "stop after this many epochs without improvement of early_stopping_monitor (0: off)"),
    Param("early_stopping_min_delta", "float", 0.0,
          "early stopping: the smallest change that counts as an improvement"),
    Param("early_stopping_monitor", "str", "val_loss", "early stopping: the metric watched "
          "(lower is better unless its name says accuracy/r2)"),
    Param("reduce_lr_patience", "int", 0,
          "ReduceLROnPlateau on val_loss: epochs without improvement before the cut (0: off)"),
    Param("reduce_lr_factor", "float", 0.1, "ReduceLROnPlateau: the learning rate's factor"),
    Param("reduce_lr_min_delta", "float", 1e-4, "ReduceLROnPlateau: the smallest improvement"),
    Param("warmup_epochs", "int", 0, "ramp the (Horovod-scaled) learning rate up from "
          "learning_rate/ranks over this many epochs (0: off; no effect at 1 rank)"),
    Param("restore_best_weights", "bool", False, "end with the weights of the best epoch "
          "by early_stopping_monitor (and report its metrics): what a leave-out tree's "
          "children start from"),
)


# The built-ins, found by module name so that candle never imports candle_benchmarks.
BUILTIN = {
    "nt3": "candle_benchmarks.nt3",
    "tc1": "candle_benchmarks.tc1",
    "p1b3": "candle_benchmarks.p1b3",
}
SYNTHETIC_WRITER = "candle_benchmarks.synth_files"  # `write_synthetic` for `candle synth`


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def get_benchmark(name: str) -> Benchmark:
    """The definition of built-in benchmark ``name`` (KeyError if there is none)."""
    module = importlib.import_module(BUILTIN[name])
    definition: Benchmark = module.BENCHMARK
    return definition


def names_definition(spec: str) -> bool:
    """Whether a sweep's ``module:NAME`` names a Benchmark (an upper-case NAME, imported when
    the sweep is validated) rather than a training function (imported only when a job runs,
    so a sweep validates where the model's own imports are missing)."""
    return spec.rpartition(":")[2].isupper()


def load_attribute(spec: str, base_dir: Path) -> Any:
    """``module:name`` imported with the sweep file's folder first on sys.path (None if the
    module has no such name)."""
    module_name, _, name = spec.partition(":")
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    return getattr(importlib.import_module(module_name), name, None)


def find_benchmark(spec: str, base_dir: Path) -> Benchmark | None:
    """The Benchmark a sweep names: a built-in or a user's ``module:NAME``; None for a user's
    training function ``module:function``."""
    if spec in BUILTIN:
        return get_benchmark(spec)
    if ":" not in spec or not names_definition(spec):
        return None
    found = load_attribute(spec, base_dir)
    if not isinstance(found, Benchmark):
        what = "nothing" if found is None else f"a {type(found).__name__}"
        raise TypeError(f"found {what}, not a candle.api.Benchmark")
    return found


class DataError(ValueError):
    """A data file the user gave is wrong; the message (one line) names the file and what
    was expected. `candle predict` shows it as a user error."""


PREDICT_FUNCTION = "open_predict_data"  # a predictor module's reader when none is named


@dataclass
class PredictChunk:
    """A block of new samples, ready for the model: ``x`` (rows first, scaled as in
    training), ``labels`` (the true targets in the model's units: class indices, or the
    regression target; None for an unlabelled file) and ``columns`` (ids echoed into the
    predictions, e.g. P1B3's cell line, drug and concentration; each one per row)."""

    x: Any
    labels: Any = None
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass
class PredictInput:
    """What a benchmark's predictor returns for a new-data file:
    ``predictor(path, params, uq, base_dir, chunk_rows) -> PredictInput``.

    ``chunks`` yields blocks of about ``chunk_rows`` rows, never the whole file; a file of
    the wrong width or format raises DataError (at open or while streaming). ``rows`` is
    the file's row count for progress (an estimate is fine). Regression: ``split_output``
    turns a model's raw output into {"mean", and "sigma" or "quantiles" +
    "quantile_levels"} for heads that predict a spread; predictions and labels are
    multiplied by ``unit`` when written (P1B3: growth in percent) and the label column
    is named ``target``."""

    kind: str  # "classification" | "regression"
    rows: int
    chunks: Iterator[PredictChunk]
    labelled: bool = False
    classes: int = 0
    split_output: Callable[[Any], dict[str, Any]] | None = None
    unit: float = 1.0
    target: str = "label"
    expected: str = ""  # what a row must hold, for messages
    ids: tuple[str, ...] = ()  # the id columns (PredictChunk.columns), written first


@dataclass
class TrainContext:
    """What a training function gets besides its params: where to write, which split, seed."""

    job_dir: Any  # pathlib.Path; Any keeps this module free of candle imports
    seed: int
    fold: int | None = None
    folds: int | None = None
    cv_seed: int = 0
    stratify: bool = True
    replica: int = 0
    rank: int = 0
    size: int = 1
    threads: int = 0
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    uq: dict[str, Any] | None = None  # the sweep's uq section (candle.spec UQSpec record)
    # The job's sample design (None: the benchmark's own split), see DESIGN_KEYS: how folds
    # group, the held-out test fraction, the train/test studies, the leave-out tree node.
    design: dict[str, Any] | None = None
    # A leave-out tree's child: the model file whose weights it starts from (its parent's
    # best), when it has no checkpoint of its own.
    init_weights: str | None = None
