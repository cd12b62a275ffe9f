"""A user model with a learning curve, for adaptive searches: cheap, but it trains "epoch
by epoch" and reports each one with ``candle.report``, so a pruner can stop it early.

The loss decays towards a floor set by the parameters (best near lr=0.01, width=64), the
way a real model's validation loss levels off at a value the hyperparameters decide.
"""

from __future__ import annotations

import math
import time
from typing import Any

import candle


def floor(lr: float, width: int) -> float:
    return 0.05 + (math.log10(lr) + 2.0) ** 2 * 0.3 + (math.log2(width) - 6.0) ** 2 * 0.05


def train(params: dict[str, Any]) -> dict[str, float]:
    lr, width = float(params["lr"]), int(params["width"])
    epochs = int(params.get("epochs", 6))
    pause = float(params.get("epoch_seconds", 0.05))
    best = floor(lr, width)
    loss = math.inf
    for epoch in range(1, epochs + 1):
        time.sleep(pause)  # the "training"
        loss = best + 1.5 * math.exp(-epoch / 2.0)
        candle.report(epoch, {"val_loss": loss})  # raises candle.Pruned when pruned
    return {"val_loss": loss, "width": float(width)}
