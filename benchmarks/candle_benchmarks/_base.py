"""What every benchmark declares: typed parameters with defaults, a data loader, a model.

Parameter definitions are importable without TensorFlow so `candle validate` stays fast;
the model and data modules are imported only when a job runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PARAM_TYPES = ("int", "float", "str", "bool", "ints", "floats", "strs")


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
    if kind == "int":
        if isinstance(value, bool):
            raise ParamError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ParamError(f"expected an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, bool):
            raise ParamError(f"expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ParamError(f"expected a number, got {value!r}")
    if kind == "str":
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ParamError(f"expected a string, got {value!r}")
    raise ParamError(f"unknown parameter type {kind!r}")


@dataclass(frozen=True)
class BenchmarkDef:
    """A benchmark's identity and parameter table; `runner` names its training module."""

    name: str
    description: str
    params: tuple[Param, ...]
    runner: str  # "module" holding `train(params, ctx) -> dict`, imported lazily
    metrics: tuple[str, ...] = ()  # every metric a job reports (what a sweep may select)
    # Raise it when a change makes the same params compute something else (a new default
    # data split, another loss): it is part of every job id, so old results are not reused.
    version: int = 1
    _index: dict[str, Param] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({p.name: p for p in self.params})

    def param(self, name: str) -> Param | None:
        return self._index.get(name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def coerce(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce known names; raise KeyError for the first unknown one."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            param = self._index.get(name)
            if param is None:
                raise KeyError(name)
            out[name] = param.coerce(value)
        return out

    def train_function(self) -> Callable[..., Any]:
        module = importlib.import_module(self.runner)
        fn: Callable[..., Any] = module.train
        return fn


# Parameters every built-in benchmark shares (upstream candle_lib "default" group + ours).
COMMON_PARAMS: tuple[Param, ...] = (
    Param("epochs", "int", 400, "number of training epochs"),
    Param("batch_size", "int", 20, "samples per gradient step (per rank)"),
    Param("learning_rate", "float", 0.001, "optimizer learning rate"),
    Param("optimizer", "str", "sgd", "Keras optimizer name",
          ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam")),
    Param("rng_seed", "int", 7102, "seed for data synthesis, initialisation and shuffling"),
    Param("data", "str", "synthetic", "'synthetic' or a directory holding the upstream files"),
    Param("verbose", "int", 0, "Keras fit verbosity (0 silent, 2 one line per epoch)"),
    Param("ckpt_keep_limit", "int", 2, "checkpoints kept per job (plus the best)"),
    Param("ckpt_restart_mode", "str", "auto", "resume from the job's checkpoint",
          ("auto", "off", "required")),
    Param("scale_lr_by_ranks", "bool", True, "multiply learning_rate by the Horovod size"),
)

# The upstream NT3/TC1 Conv1D classifier's own parameters (both benchmarks share them).
CONV_CLASSIFIER_PARAMS: tuple[Param, ...] = (
    Param("conv", "ints", [128, 20, 1, 128, 10, 1],
          "conv layers as (filters, kernel, stride) triples"),
    Param("pool", "ints", [1, 10], "max-pool size after each conv layer (0: none)"),
    Param("dense", "ints", [200, 20], "units of the dense layers"),
    Param("activation", "str", "relu", "hidden activation"),
    Param("out_activation", "str", "softmax", "output activation"),
    Param("dropout", "float", 0.1, "dropout after each dense layer"),
    Param("loss", "str", "categorical_crossentropy", "Keras loss"),
)

BUILTIN = {
    "nt3": "candle_benchmarks.nt3",
    "tc1": "candle_benchmarks.tc1",
    "p1b3": "candle_benchmarks.p1b3",
}


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def get_benchmark(name: str) -> BenchmarkDef:
    """The definition of built-in benchmark ``name`` (KeyError if there is none)."""
    module = importlib.import_module(BUILTIN[name])
    definition: BenchmarkDef = module.BENCHMARK
    return definition


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
