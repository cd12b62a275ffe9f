"""A user model for candle: any function taking the params dict and returning metrics."""

from __future__ import annotations

from typing import Any


def objective(params: dict[str, Any]) -> dict[str, float]:
    x, y = float(params["x"]), float(params["y"])
    return {"val_loss": (x - 0.3) ** 2 + (y + 0.1) ** 2, "fold": float(params["fold"] or 0)}
