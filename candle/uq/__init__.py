"""Uncertainty quantification: what jobs save (test-set predictions) and what `candle
summary` and `candle report` compute from them (ensemble metrics, spread, calibration)."""

from candle.uq.summary import UQRow, summarise_uq

__all__ = ["UQRow", "summarise_uq"]
