"""candle: run deep-learning hyperparameter sweeps on HPC schedulers, resumably."""

__version__ = "0.1.0"
