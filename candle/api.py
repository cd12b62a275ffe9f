"""The public API for model code: everything a benchmark or a user's model may use of candle.

Define a benchmark (its typed parameters with defaults and the metrics it reports), report
each epoch, stop when asked, return test-set predictions, write files atomically. Model code
(the built-in ``candle_benchmarks`` included) imports this module and nothing else of candle,
so candle's internals can change without breaking a model.
"""

from candle.benchmark import (
    TRAINING_PARAMS,
    Benchmark,
    DataError,
    Param,
    ParamError,
    PredictChunk,
    PredictInput,
    TrainContext,
)
from candle.job.controls import EarlyStopping, keras_callbacks
from candle.job.interrupt import Interrupted
from candle.job.interrupt import check as check_stop
from candle.job.progress import Pruned, report, stop_requested
from candle.spec.model import NOISE_PARAM
from candle.spec.site import LOCAL_SCRATCH_ENV
from candle.store.atomic import atomic_write_json, atomic_writer
from candle.uq.predictions import Predictions

__all__ = [
    "LOCAL_SCRATCH_ENV",
    "NOISE_PARAM",
    "TRAINING_PARAMS",
    "Benchmark",
    "DataError",
    "EarlyStopping",
    "Interrupted",
    "Param",
    "ParamError",
    "PredictChunk",
    "PredictInput",
    "Predictions",
    "Pruned",
    "TrainContext",
    "atomic_write_json",
    "atomic_writer",
    "check_stop",
    "keras_callbacks",
    "report",
    "stop_requested",
]
