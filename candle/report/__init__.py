"""Status and summary read from the run directory alone."""

from candle.report.status import RunStatus, collect_status
from candle.report.summary import PointRow, Summary, mean_std, summarise

__all__ = ["PointRow", "RunStatus", "Summary", "collect_status", "mean_std", "summarise"]
