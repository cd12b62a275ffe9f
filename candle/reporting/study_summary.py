"""`candle summary` for an adaptive search: its trials as the Optuna journal has them,
the best trial (or the Pareto front when there are several metrics) and which
parameters mattered (fANOVA importances)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from candle.adaptive.config import OptunaConfig
from candle.adaptive.study import FAILED_ATTR, SEEDED_ATTR, read_study, used_budget
from candle.spec.model import direction_sign
from candle.spec.samplers import search_space
from candle.store.run_store import RunStore


@dataclass
class TrialRow:
    number: int
    state: str  # complete | pruned | failed | running | waiting
    params: dict[str, Any]
    values: list[float] | None
    last_step: int | None  # the last epoch reported (a pruned trial stopped there)
    note: str = ""  # why it failed, or that a crashed supervisor left it (not counted)
    best: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StudySummary:
    name: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    trials: int  # the budget
    used: int  # trials that count against it
    rows: list[TrialRow]
    importances: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> ...

    @property
    def best(self) -> list[TrialRow]:
        return [r for r in self.rows if r.best]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metrics": list(self.metrics),
                "directions": list(self.directions), "trials": self.trials,
                "used": self.used, "best": [r.number for r in self.best],
                "importances": self.importances, "rows": [r.to_dict() for r in self.rows]}


def summarise_study(store: RunStore, importances: bool = True) -> StudySummary:
    from optuna.trial import TrialState

    config = store.require().manifest().optuna
    assert config is not None, "summarise_study is for an Optuna search"
    study = read_study(store.root, config.study_name)
    trials = study.get_trials(deepcopy=False)
    best_numbers = _best_numbers(study, config)
    space = search_space(config.dimensions())
    rows = []
    for trial in trials:
        state = {"fail": "failed"}.get(trial.state.name.lower(), trial.state.name.lower())
        note = ""
        if trial.state == TrialState.FAIL:
            note = str(trial.user_attrs.get(FAILED_ATTR) or
                       "its supervisor stopped; retried, not counted")
        elif SEEDED_ATTR in trial.user_attrs:  # search.seed_from: a result from before
            note = f"seeded from {trial.user_attrs[SEEDED_ATTR]}; not counted"
        steps = trial.intermediate_values
        rows.append(TrialRow(trial.number, state, space.decode(trial.params),
                             list(trial.values) if trial.values else None,
                             max(steps) if steps else None, note,
                             trial.number in best_numbers))
    signs = [direction_sign(d) for d in config.directions]

    def order(row: TrialRow) -> tuple[Any, ...]:
        """Best first, then complete trials by value, then pruned (by the value they had
        when stopped), then the rest."""
        if row.values is None:
            return (3, 0.0, row.number)
        rank = 0 if row.best else 1 if row.state == "complete" else 2
        return (rank, signs[0] * row.values[0], row.number)

    rows.sort(key=order)
    summary = StudySummary(config.study_name, config.metrics, config.directions,
                           config.trials, used_budget(study), rows)
    if importances:
        summary.importances = _importances(study, config)
    return summary


def _best_numbers(study: Any, config: OptunaConfig) -> set[int]:
    """The best trial, or every trial on the Pareto front."""
    try:
        if config.multi_objective:
            return {t.number for t in study.best_trials}
        return {study.best_trial.number}
    except ValueError:  # no trial completed yet
        return set()


def _importances(study: Any, config: OptunaConfig) -> dict[str, dict[str, float]]:
    """fANOVA importances per metric; empty until enough trials completed to fit it."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 4 or len(config.space) < 2:
        return {}
    out: dict[str, dict[str, float]] = {}
    for index, metric in enumerate(config.metrics):
        target: Callable[[Any], float] | None = None
        if config.multi_objective:
            target = partial(_value_at, index=index)
        try:
            found = optuna.importance.get_param_importances(study, target=target)
        except (RuntimeError, ValueError, ImportError):
            continue
        out[metric] = {k: float(v) for k, v in found.items() if math.isfinite(v)}
    return out


def _value_at(trial: Any, index: int) -> float:
    return float(trial.values[index])


def plot_study(summary: StudySummary, path: Any) -> None:
    """Single metric: every trial's value and the best so far; two or more: the first
    two metrics with the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(summary.rows, key=lambda r: r.number)
    done = [r for r in rows if r.values is not None and r.state == "complete"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if len(summary.metrics) == 1:
        sign = direction_sign(summary.directions[0])
        ax.scatter([r.number for r in done], [r.values[0] for r in done if r.values],
                   s=18, label="complete")
        best: list[float] = []
        for r in done:
            value = r.values[0] if r.values else math.nan
            best.append(value if not best or sign * value < sign * best[-1] else best[-1])
        ax.step([r.number for r in done], best, where="post", color="C1", label="best so far")
        pruned = [r for r in rows if r.state == "pruned" and r.values]
        if pruned:  # where they stood when stopped
            ax.scatter([r.number for r in pruned], [r.values[0] for r in pruned if r.values],
                       marker="x", color="C3", label="pruned (value when stopped)")
        ax.set_xlabel("trial")
        ax.set_ylabel(summary.metrics[0])
    else:
        ax.scatter([r.values[0] for r in done if r.values], [r.values[1] for r in done
                   if r.values], s=18, color="0.6", label="trials")
        front = sorted((r for r in done if r.best), key=lambda r: r.values[0] if r.values
                       else 0.0)
        ax.plot([r.values[0] for r in front if r.values], [r.values[1] for r in front
                if r.values], "o-", color="C3", label="Pareto front")
        ax.set_xlabel(f"{summary.metrics[0]} ({summary.directions[0]})")
        ax.set_ylabel(f"{summary.metrics[1]} ({summary.directions[1]})")
    ax.set_title(f"{summary.name}: {summary.used}/{summary.trials} trials")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
