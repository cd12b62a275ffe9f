"""candle: run deep-learning hyperparameter sweeps on HPC schedulers, resumably."""

from candle.job.progress import Pruned, report

__version__ = "0.1.0"
__all__ = ["Pruned", "__version__", "report"]
