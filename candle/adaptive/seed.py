"""``search.seed_from`` for an adaptive search: a previous run's results, or a CSV's rows,
become COMPLETE trials of the study before it asks its first new one (like mlrMBO's
RESTART_FILE): the sampler starts from what is known, and the budget (``trials``) counts
the new trials only.

- A run directory: each point's metric mean over its done jobs (folds, replicas), as
  ``candle summary`` shows it. A point's params are its jobs' resolved params.
- A CSV: a header row, then one point a row; columns named like the searched params and
  the metrics are read, the others ignored. A value is read as the parameter's type (a
  built-in benchmark's ``Param.coerce``; otherwise as JSON, else as text).
- A point outside the new search space is skipped and counted: a searched param missing,
  not among a categorical's choices, outside a range or off its step.
- From a run directory, a point computed under other settings is skipped and counted (the
  notice names the first difference): a job's resolved params (the benchmark's defaults
  overlaid by its params) differ from this sweep's (its defaults overlaid by its fixed
  params) in a param this sweep does not search, its settings (`JobSettings`: cv seed and
  stratification, UQ, ranks, benchmark version) differ, or, with cv, its folds count.
- Once per study: the study's user attr ``candle_seeded_from`` says it was done; each
  seeded trial carries its source row, so a seeding cut short by a crash is completed
  without doubles.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candle.adaptive.config import OptunaConfig
from candle.adaptive.study import SEEDED_ATTR
from candle.plan.jobs import Job, JobSettings
from candle.spec.model import Choice, Dimension, IntRange, Uniform
from candle.spec.samplers import encode_choice, search_space
from candle.store.run_store import RunStore

STUDY_ATTR = "candle_seeded_from"  # on the study: seeding is done (a dict, see SeedReport)
ROW_ATTR = "candle_seed_row"  # on a seeded trial: its point's index in the source

Coerce = Callable[[str, Any], Any]  # (param name, CSV text) -> value; raises ValueError


@dataclass(frozen=True)
class SeedPoint:
    params: dict[str, Any]
    values: list[float] | None  # None: a metric is missing or not finite
    other: str | None = None  # computed under other settings: the first difference


@dataclass(frozen=True)
class Expected:
    """What a run directory's job must have been computed under to seed this sweep."""

    defaults: dict[str, Any]  # the benchmark's ({} for a training function)
    params: dict[str, Any]  # this sweep's resolved fixed params: defaults overlaid by params
    searched: frozenset[str]  # the params this sweep searches (not compared)
    settings: dict[str, Any]  # JobSettings.of(sweep).record()
    folds: int | None  # with cv: the folds count; None: not compared

    def difference(self, job: Job) -> str | None:
        """The first way ``job`` was computed otherwise, as "name theirs vs ours"; None if
        it was computed as this sweep would."""
        resolved = {**self.defaults, **job.params}
        for name in sorted((set(resolved) | set(self.params)) - self.searched):
            theirs, ours = resolved.get(name, _MISSING), self.params.get(name, _MISSING)
            if theirs is _MISSING or ours is _MISSING or not same(theirs, ours):
                return f"{name} {_show(theirs)} vs {_show(ours)}"
        settings = {**JobSettings().record(), **job.settings}  # a record older than a key
        for key in sorted(set(settings) | set(self.settings)):
            theirs, ours = _show(settings.get(key)), _show(self.settings.get(key))
            if theirs != ours:  # as JSON: a record read back has lists for tuples
                return f"{key} {theirs} vs {ours}"
        if self.folds is not None and job.folds != self.folds:
            return f"folds {_show(job.folds)} vs {self.folds}"
        return None


def _show(value: Any) -> str:
    if value is _MISSING:
        return "unset"
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class SeedReport:
    source: str
    seeded: int  # finished trials the study holds from the source
    outside: int  # points outside the search space, skipped
    no_metric: int = 0  # points without a finite value of every metric, skipped
    before: bool = False  # seeded by an earlier `candle run`: nothing added now
    other: int = 0  # points computed under other settings, skipped
    other_reason: str = ""  # the first one's first difference ("epochs 2 vs 400")

    def line(self) -> str:
        if self.before:
            return (f"the study was seeded from {self.source} before ({self.seeded} trial(s)); "
                    "not seeded again")
        parts = [f"seeded {self.seeded} finished trial(s) from {self.source}",
                 f"{self.outside} outside the search space skipped"]
        if self.no_metric:
            parts.append(f"{self.no_metric} without a finite metric skipped")
        if self.other:
            parts.append(f"{self.other} computed under other settings skipped "
                         f"({self.other_reason})")
        return "; ".join(parts)

    def to_record(self) -> dict[str, Any]:
        return {"source": self.source, "seeded": self.seeded, "outside": self.outside,
                "no_metric": self.no_metric, "other": self.other,
                "other_reason": self.other_reason}


def run_points(source: RunStore, metrics: tuple[str, ...],
               expected: Expected | None = None) -> list[SeedPoint]:
    """A run directory's points with a done job: each metric's mean over its done jobs.
    ``expected``: a point with a job computed otherwise carries the difference (None: not
    checked)."""
    params: dict[int, dict[str, Any]] = {}
    values: dict[int, list[dict[str, Any]]] = defaultdict(list)
    other: dict[int, str] = {}
    for job in source.jobs():
        result = source.result(job.id)
        if result is None or result.get("status") != "done":
            continue
        params.setdefault(job.point, job.params)
        values[job.point].append(result.get("metrics") or {})
        difference = expected.difference(job) if expected is not None else None
        if difference is not None:
            other.setdefault(job.point, difference)
    points = []
    for point in sorted(params):
        means: list[float] | None = []
        for metric in metrics:
            per_job = [m.get(metric) for m in values[point]]
            if not all(isinstance(v, int | float) and not isinstance(v, bool)
                       and math.isfinite(v) for v in per_job):
                means = None
                break
            assert means is not None
            means.append(sum(float(v) for v in per_job if v is not None) / len(per_job))
        points.append(SeedPoint(params[point], means, other.get(point)))
    return points


def csv_points(path: Path, names: list[str], metrics: tuple[str, ...],
               coerce: Coerce) -> list[SeedPoint]:
    """A CSV's rows; a searched param whose cell is empty or unreadable is left out of the
    point (which is then outside the space). A malformed body raises csv.Error whose
    message starts with its line ("line 3: ...")."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            return _csv_rows(reader, names, metrics, coerce)
        except csv.Error as exc:
            raise csv.Error(f"line {reader.reader.line_num}: {exc}") from None


def _csv_rows(reader: csv.DictReader[str], names: list[str], metrics: tuple[str, ...],
              coerce: Coerce) -> list[SeedPoint]:
    points = []
    for row in reader:
        cells = {str(k).strip(): (v or "").strip() for k, v in row.items()
                 if k is not None}
        params: dict[str, Any] = {}
        for name in names:
            if cells.get(name):
                try:
                    params[name] = coerce(name, cells[name])
                except ValueError:
                    continue
        values: list[float] | None = []
        for metric in metrics:
            try:
                value = float(cells.get(metric, ""))
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                values = None
                break
            assert values is not None
            values.append(value)
        points.append(SeedPoint(params, values))
    return points


def text_value(text: str) -> Any:
    """A CSV cell for a parameter no benchmark declares: JSON (numbers, true/false, lists),
    else the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def seed_study(study: Any, config: OptunaConfig, points: list[SeedPoint],
               source: str) -> SeedReport:
    """Add ``points`` to ``study`` as COMPLETE trials, once."""
    import optuna

    done = study.user_attrs.get(STUDY_ATTR)
    if isinstance(done, dict):
        return SeedReport(str(done.get("source", source)), int(done.get("seeded", 0)),
                          int(done.get("outside", 0)), int(done.get("no_metric", 0)), True,
                          int(done.get("other", 0)), str(done.get("other_reason", "")))
    dims = config.dimensions()
    distributions = search_space(dims).distributions
    present = {t.user_attrs.get(ROW_ATTR) for t in study.get_trials(deepcopy=False)
               if SEEDED_ATTR in t.user_attrs}
    seeded = outside = no_metric = other = 0
    other_reason = ""
    for row, point in enumerate(points):
        if point.other is not None:
            other += 1
            other_reason = other_reason or point.other
            continue
        encoded = encode(dims, point.params)
        if encoded is None:
            outside += 1
            continue
        if point.values is None:
            no_metric += 1
            continue
        seeded += 1
        if row in present:
            continue  # added before a crash cut the seeding short
        study.add_trial(optuna.trial.create_trial(
            params=encoded, distributions=distributions, values=point.values,
            user_attrs={SEEDED_ATTR: source, ROW_ATTR: row}))
    report = SeedReport(source, seeded, outside, no_metric, other=other,
                        other_reason=other_reason)
    study.set_user_attr(STUDY_ATTR, report.to_record())
    return report


def encode(dims: dict[str, Dimension], params: dict[str, Any]) -> dict[str, Any] | None:
    """The point as Optuna params of the space, or None when it lies outside it."""
    out: dict[str, Any] = {}
    for name, dim in dims.items():
        value = params.get(name)
        if value is None:
            return None
        if isinstance(dim, Choice):
            match = next((v for v in dim.values if same(v, value)), _MISSING)
            if match is _MISSING:
                return None
            out[name] = encode_choice(dim.values, match)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if isinstance(dim, Uniform):
            if not (math.isfinite(value) and dim.low <= value <= dim.high):
                return None
            out[name] = float(value)
        elif isinstance(dim, IntRange):
            if not float(value).is_integer():
                return None
            number = int(value)
            if not dim.low <= number <= dim.high or (number - dim.low) % dim.step:
                return None
            out[name] = number
    return out


_MISSING = object()


def same(a: Any, b: Any) -> bool:
    """Equal as parameter values: 1 and 1.0 are, True and 1 are not; lists item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return type(a) is type(b) and bool(a == b)
