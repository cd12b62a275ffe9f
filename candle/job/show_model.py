"""`candle train <b> --summary`: build the model at the given sizes, print it, no training."""

from __future__ import annotations

import importlib
from typing import Any

import click

from candle.benchmark import get_benchmark


def build_model(benchmark: str, params: dict[str, Any]) -> Any:
    module = importlib.import_module(get_benchmark(benchmark).runner)
    return module.build(params)


def print_model_summary(benchmark: str, params: dict[str, Any]) -> int:
    model = build_model(benchmark, params)
    model.summary(print_fn=click.echo)
    count = int(model.count_params())
    click.echo(f"{benchmark}: {count:,} parameters")
    return count
