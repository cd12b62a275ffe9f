"""A user model that trains in no time, for tests of ``search.seed_from``: its loss is a
bowl in x and y, and each training appends a line to the file ``marker`` (when given) and
writes a "checkpoint" in its job directory, so a test can count trainings and follow the
files a reused job brings along."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def train(params: dict[str, Any]) -> dict[str, float]:
    x, y = float(params["x"]), float(params.get("y", 0.0))
    marker = params.get("marker")
    if marker:
        with open(marker, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"x": x, "y": y, "job_dir": params["job_dir"]}) + "\n")
    ckpt = Path(params["job_dir"]) / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "model.txt").write_text(f"x={x} y={y}\n")
    return {"val_loss": (x - 0.3) ** 2 + (y - 0.5) ** 2, "cost": x + y}
