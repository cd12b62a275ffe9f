"""Status and summary read from the run directory alone."""

from candle.reporting.cv import mean_std
from candle.reporting.status import RunStatus, collect_status
from candle.reporting.summary import PointRow, Summary, summarise

__all__ = ["PointRow", "RunStatus", "Summary", "collect_status", "mean_std", "summarise"]
