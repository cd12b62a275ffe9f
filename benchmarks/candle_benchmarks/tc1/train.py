"""Train TC1 for one job (imported only when a job runs: it pulls in TensorFlow)."""

from __future__ import annotations

from typing import Any

from candle.api import TrainContext
from candle_benchmarks._keras import configure_tensorflow, fit
from candle_benchmarks.conv1d import build_conv_classifier
from candle_benchmarks.tc1 import data


def build(params: dict[str, Any], width: int | None = None) -> Any:
    tf = configure_tensorflow(TrainContext(job_dir=".", seed=int(params["rng_seed"])))
    return build_conv_classifier(tf, params, width or int(params["features"]))


def train(params: dict[str, Any], ctx: TrainContext) -> dict[str, Any]:
    """Upstream's run(): the conv classifier plus ReduceLROnPlateau on val_loss (the
    reduce_lr_* params, patience 10 by default; `fit` adds it for every built-in)."""
    tf = configure_tensorflow(ctx)
    arrays = data.load(params, ctx.fold, ctx.folds, ctx.cv_seed, ctx.stratify)
    model = build_conv_classifier(tf, params, arrays.x_train.shape[1])
    return fit(tf, model, arrays, params, ctx)
