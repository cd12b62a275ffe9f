"""Which job-identity settings a sweep changed since its run directory was planned.

Job ids already hash these settings, so a static sweep whose settings changed simply plans
new jobs; this names the change so people are told, and so an adaptive study (whose
finished trials were computed under the old settings) can be refused rather than mixed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from candle.plan.jobs import ID_SCHEME, JobTemplate

# (where the value sits in a JobTemplate record, the sweep key people write)
_WATCHED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("benchmark",), "benchmark"),
    (("folds",), "cv.folds"),
    (("settings", "cv_seed"), "cv.seed"),
    (("settings", "stratify"), "cv.stratify"),
    (("settings", "uq", "method"), "uq.method"),
    (("settings", "uq", "samples"), "uq.samples"),
    (("settings", "uq", "noise"), "uq.noise"),
    (("settings", "uq", "loss"), "uq.loss"),
    (("settings", "ranks"), "resources.ranks_per_job"),
    (("base_seed",), "seed (params.rng_seed, else search.seed)"),
    (("settings", "benchmark_version"), "benchmark version"),
)


@dataclass(frozen=True)
class Change:
    key: str  # as the sweep file spells it, e.g. cv.seed
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} changed ({_show(self.old)} -> {_show(self.new)})"


def _show(value: Any) -> str:
    return "unset" if value is None else str(value)


def _get(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def settings_changes(old_template: dict[str, Any] | None, new: JobTemplate) -> list[Change]:
    """The identity settings that differ between a run's stored template and ``new``.
    A template from before job ids hashed these settings is one change: the id scheme."""
    if not old_template:
        return []
    if "settings" not in old_template:
        return [Change("job id scheme", 1, ID_SCHEME)]
    record = new.to_record()
    return [Change(key, _get(old_template, path), _get(record, path))
            for path, key in _WATCHED
            if _get(old_template, path) != _get(record, path)]
