"""run.json as one typed, versioned record. Every reader (status, reports, a job, the
supervisor inside an allocation) gets the same fields from one function, so renaming a
field is a schema change that old run directories are migrated through, not a silent
KeyError on a compute node."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from candle.adaptive.config import OptunaConfig
from candle.errors import UserError
from candle.spec.model import Resources
from candle.store.atomic import read_json
from candle.store.records import take_schema

# run.json's version. Files without one (candle before the manifest) are schema 0: the
# same keys, some of them missing in older files; reading fills those in.
SCHEMA = 1


@dataclass(frozen=True)
class RunManifest:
    """What a run directory was planned from: enough to supervise, run one job, or report
    it without the sweep file. ``resources.site`` is never set here: the site is kept as
    its file (``site_file``) and loaded by whoever needs it."""

    name: str
    benchmark: str
    metric: str
    method: str
    base_dir: Path
    source: Path
    resources: Resources
    direction: str = "minimize"
    metrics: tuple[str, ...] = ()  # every objective; reading fills in (metric,)
    directions: tuple[str, ...] = ()
    folds: int | None = None
    cv_seed: int = 0
    stratify: bool = True
    replicas: int = 1
    uq: dict[str, Any] | None = None  # UQSpec.to_record()
    retries: int = 1
    fail_fast: bool = False  # `candle run --fail-fast`, for the allocation's supervisor
    job_timeout: float = 0.0  # training.job_timeout: seconds an attempt may run; 0: no limit
    # JobTemplate.to_record(), kept raw: settings_changes tells its versions apart by keys
    template: dict[str, Any] | None = None
    optuna: OptunaConfig | None = None
    pbt: dict[str, Any] | None = None  # candle.adaptive.pbt.PbtConfig.to_record()
    site_file: Path | None = None
    candle_version: str = ""
    updated: float = 0.0
    jobs: int = 0  # how many the plan held when it was written

    @property
    def uq_method(self) -> str:
        return str((self.uq or {}).get("method", "ensemble"))

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        del record["site_file"]
        resources = {f.name: getattr(self.resources, f.name) for f in fields(self.resources)}
        record.update(
            schema=SCHEMA, base_dir=str(self.base_dir), source=str(self.source),
            metrics=list(self.metrics), directions=list(self.directions),
            optuna=self.optuna.to_record() if self.optuna else None,
            resources={**resources, "site": str(self.site_file) if self.site_file else None})
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], file: Path) -> RunManifest:
        """``file``: where the record came from, named by any error."""
        data = dict(record)
        take_schema(data, SCHEMA, file)
        try:
            resources = dict(data.pop("resources"))
            site = resources.pop("site", None)
            data.setdefault("name", file.parent.name)
            data["metrics"] = tuple(data.get("metrics") or [data["metric"]])
            data["directions"] = tuple(data.get("directions") or [data.get(
                "direction", "minimize")])
            optuna = data.get("optuna")
            return cls(**{**data, "base_dir": Path(data["base_dir"]),
                          "source": Path(data["source"]), "resources": Resources(**resources),
                          "site_file": Path(site) if site else None,
                          "optuna": OptunaConfig.from_record(optuna) if optuna else None})
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not a run manifest candle can read ({type(exc).__name__}: "
                            f"{exc})", file=file) from None


def read_manifest(path: Path) -> RunManifest:
    """The one way run.json is read (older schemas are migrated, newer ones refused)."""
    return RunManifest.from_record(read_json(path), path)
