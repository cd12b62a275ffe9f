"""An adaptive search's settings as run.json keeps them: the supervisor inside an
allocation rebuilds the study from these, not from the sweep file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from candle.spec.model import Choice, Dimension, IntRange, SearchSpec, Uniform


@dataclass(frozen=True)
class OptunaConfig:
    study_name: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    trials: int
    seed: int
    sampler: str
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    batch: int = 0
    space: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, search: SearchSpec) -> OptunaConfig:
        metrics, directions = zip(*search.objectives, strict=True)
        return cls(name, tuple(metrics), tuple(directions), search.trials, search.seed,
                   search.sampler, dict(search.sampler_options), search.pruner,
                   dict(search.pruner_options), search.batch,
                   {n: dimension_record(d) for n, d in search.space.items()})

    @property
    def pruning(self) -> bool:
        return self.pruner != "none"

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def dimensions(self) -> dict[str, Dimension]:
        return {name: dimension_of(record) for name, record in self.space.items()}

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> OptunaConfig:
        data = dict(record)
        data["metrics"] = tuple(data["metrics"])
        data["directions"] = tuple(data["directions"])
        return cls(**data)


def dimension_record(dim: Dimension) -> dict[str, Any]:
    if isinstance(dim, Choice):
        return {"choice": list(dim.values)}
    if isinstance(dim, Uniform):
        return {"uniform": [dim.low, dim.high], "log": dim.log}
    return {"int": [dim.low, dim.high], "log": dim.log, "step": dim.step}


def dimension_of(record: dict[str, Any]) -> Dimension:
    if "choice" in record:
        return Choice(tuple(record["choice"]))
    if "uniform" in record:
        low, high = record["uniform"]
        return Uniform(float(low), float(high), bool(record.get("log", False)))
    low, high = record["int"]
    return IntRange(int(low), int(high), bool(record.get("log", False)),
                    int(record.get("step", 1)))
