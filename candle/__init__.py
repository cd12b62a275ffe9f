"""candle: run deep-learning hyperparameter sweeps on HPC schedulers, resumably."""

from candle.job.interrupt import Interrupted
from candle.job.progress import Pruned, report, stop_requested

__version__ = "0.1.0"
__all__ = ["Interrupted", "Pruned", "__version__", "report", "stop_requested"]
