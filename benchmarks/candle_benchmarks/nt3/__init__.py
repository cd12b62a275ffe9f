"""NT3: normal vs tumour classification from RNA-seq expression (Pilot1/NT3), 1-D conv."""

from candle.api import Benchmark, Param
from candle_benchmarks._base import COMMON_PARAMS, CONV_CLASSIFIER_PARAMS

# Defaults follow upstream Pilot1/NT3/nt3_default_model.txt.
BENCHMARK = Benchmark(
    name="nt3",
    description="normal vs tumour (2 classes), Conv1D stack on 60,483 expression features",
    runner="candle_benchmarks.nt3.train",
    metrics=("loss", "accuracy", "val_loss", "val_accuracy", "params_count"),
    params=(
        *COMMON_PARAMS,
        Param("classes", "int", 2, "number of output classes"),
        *CONV_CLASSIFIER_PARAMS,
        Param("features", "int", 60483, "synthetic: expression features per sample"),
        Param("samples", "int", 1400, "synthetic: total samples (train + test)"),
        Param("signal_genes", "float", 0.1, "synthetic: fraction of genes that differ"),
        Param("signal_strength", "float", 1.0, "synthetic: log-fold change of those genes"),
        Param("test_fraction", "float", 0.2, "synthetic: held-out test share"),
    ),
)
