"""Sweep-file names → Optuna samplers, pruners and distributions.

Options are checked against each class's own signature and then by constructing it, so a
typo or a bad value is reported at `candle validate` time, not after hours in the queue.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from candle.spec.model import Choice, Dimension, IntRange, Uniform

SAMPLERS = ("tpe", "gp", "cmaes", "random", "qmc", "nsga2")
PRUNERS = ("none", "median", "percentile", "hyperband")
# What needs more than optuna itself, and how to get it.
SAMPLER_NEEDS = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",), "qmc": ("scipy",)}


class OptionError(ValueError):
    """A sampler/pruner option the class does not take, or a value it refuses."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _sampler_class(name: str) -> Any:
    import optuna

    return {
        "tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
        "cmaes": optuna.samplers.CmaEsSampler, "random": optuna.samplers.RandomSampler,
        "qmc": optuna.samplers.QMCSampler, "nsga2": optuna.samplers.NSGAIISampler,
    }[name]


def _pruner_class(name: str) -> Any:
    import optuna

    return {
        "none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }[name]


# Defaults that differ from Optuna's, and why.
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    # Several trials run at once: without the liar, TPE proposes the same point to each.
    "tpe": {"constant_liar": True},
    # Scrambling is what makes the seed matter; unscrambled Sobol ignores it.
    "qmc": {"scramble": True},
}


def _construct(cls: Any, options: dict[str, Any], fixed: dict[str, Any]) -> Any:
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in options:
        if key not in accepted or key in fixed:
            valid = ", ".join(p for p in accepted if p not in fixed) or "none"
            raise OptionError(f"{cls.__name__} has no option {key!r}; its options: {valid}",
                              key)
    import warnings

    from optuna.exceptions import ExperimentalWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # constant_liar, gp, qmc...
            return cls(**{**options, **fixed})
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{cls.__name__}: {exc}") from None


def check_installed(name: str) -> None:
    """Raise OptionError naming what to install when a sampler's extras are missing."""
    import importlib.util

    missing = [m for m in SAMPLER_NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise OptionError(f"sampler {name} needs {' and '.join(missing)}: "
                          f"pip install {' '.join(missing)} (scripts/setup.sh installs them)")


def make_sampler(name: str, options: dict[str, Any], seed: int) -> Any:
    check_installed(name)
    cls = _sampler_class(name)
    merged = {**SAMPLER_DEFAULTS.get(name, {}), **options}
    return _construct(cls, merged, {"seed": seed})


def make_pruner(name: str, options: dict[str, Any]) -> Any:
    return _construct(_pruner_class(name), options, {})


@dataclass(frozen=True)
class SearchSpace:
    """Optuna distributions for the sweep's space, and the way back to sweep values.

    Optuna's categorical choices must be None, bool, int, float or str; a list value (TC1's
    ``dense: [[500, 100], [1000]]``) is carried as its JSON text and decoded again.
    """

    distributions: dict[str, Any]
    decoders: dict[str, Callable[[Any], Any]]

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        return {name: self.decoders.get(name, _same)(value) for name, value in params.items()}


def _same(value: Any) -> Any:
    return value


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def encode_choice(choices: tuple[Any, ...], value: Any) -> Any:
    """A categorical's value as Optuna carries it: itself where every choice is None, bool,
    int, float or str; else its JSON text (decoded by `SearchSpace.decode`)."""
    if all(_primitive(v) for v in choices):
        return value
    return json.dumps(value, sort_keys=True)


def search_space(space: dict[str, Dimension]) -> SearchSpace:
    import optuna.distributions as od

    distributions: dict[str, Any] = {}
    decoders: dict[str, Callable[[Any], Any]] = {}
    for name, dim in space.items():
        if isinstance(dim, Choice):
            distributions[name] = od.CategoricalDistribution(
                [encode_choice(dim.values, v) for v in dim.values])
            if not all(_primitive(v) for v in dim.values):
                decoders[name] = json.loads
        elif isinstance(dim, Uniform):
            distributions[name] = od.FloatDistribution(dim.low, dim.high, log=dim.log)
        elif isinstance(dim, IntRange):
            if dim.log and dim.step != 1:
                raise OptionError("an int range cannot be both log-scaled and stepped", name)
            distributions[name] = od.IntDistribution(dim.low, dim.high, log=dim.log,
                                                     step=dim.step)
        else:  # pragma: no cover - the parser makes only these
            raise TypeError(f"unknown dimension {dim!r}")
    return SearchSpace(distributions, decoders)
