"""model.json: the card of a final model (``candle train --from``). It says what the model
is (benchmark, params, members and their seeds), how good it was (metrics), what it was
trained on (a digest of the training data) and where it came from (run, point), so a
prediction made with it years later can be traced and repeated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from candle.errors import UserError
from candle.store.atomic import atomic_write_json, read_json
from candle.store.records import take_schema

CARD = "model.json"
SCHEMA = 1


@dataclass(frozen=True)
class CardMember:
    """One trained model of the ensemble; ``model`` is relative to the model directory
    ("" for a user's training function, which keeps its own models in jobs/<job_id>/)."""

    job_id: str
    replica: int
    seed: int
    model: str
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    data_digest: str | None = None


@dataclass(frozen=True)
class ModelCard:
    benchmark: str
    params: dict[str, Any]  # resolved: the benchmark's defaults overlaid by the point
    members: tuple[CardMember, ...]
    metrics: dict[str, dict[str, float]]  # metric -> {mean, std, n} over the members
    source: dict[str, Any]  # {"run", "point", "metric", "direction", "value", "params"}
    base_dir: str  # where the benchmark's module and relative data paths resolve
    benchmark_version: int = 0
    uq: dict[str, Any] | None = None  # the members' UQ method and options, if any
    data_digest: str | None = None  # sha256 of the training data (all members share it)
    candle_version: str = ""
    created: float = 0.0

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["schema"] = SCHEMA
        record["members"] = [asdict(m) for m in self.members]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], file: Path) -> ModelCard:
        data = dict(record)
        take_schema(data, SCHEMA, file)
        try:
            members = tuple(CardMember(**m) for m in data.pop("members"))
            return cls(members=members, **data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not a model card candle can read ({type(exc).__name__}: "
                            f"{exc})", file=file) from None

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / CARD
        atomic_write_json(path, self.to_record())
        return path


def read_card(model_dir: Path) -> ModelCard:
    path = Path(model_dir) / CARD
    try:
        record = read_json(path)
    except FileNotFoundError:
        raise UserError("no model.json here: not a model directory (make one with "
                        "`candle train --from RUN_DIR --best --out DIR`)", file=model_dir
                        ) from None
    except ValueError as exc:
        raise UserError(f"unreadable model card: {exc}", file=path) from None
    if not isinstance(record, dict):
        raise UserError("not a model card (expected a JSON object)", file=path)
    return ModelCard.from_record(record, path)
