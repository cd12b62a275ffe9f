"""What user models call: ``candle.report`` stays the per-epoch function however much of
candle has been imported (a subpackage named ``report`` used to replace it)."""

from __future__ import annotations

import importlib
import pkgutil

import candle


def test_candle_report_is_the_function_after_every_module_is_imported() -> None:
    for module in pkgutil.walk_packages(candle.__path__, "candle."):
        importlib.import_module(module.name)
    assert callable(candle.report) and candle.report.__module__ == "candle.job.progress"
    assert candle.report(1, {"val_loss": 0.5}) is None  # outside a search: records nothing
    assert candle.stop_requested() is False
