"""NT3: normal vs tumour classification from RNA-seq expression (Pilot1/NT3), 1-D conv."""

from dataclasses import replace

from candle.api import Benchmark, Param
from candle_benchmarks._base import COMMON_PARAMS, CONV_CLASSIFIER_PARAMS, MUTABLE_PARAMS

# Upstream nt3_baseline_keras2.py trains with ReduceLROnPlateau(val_loss, factor 0.1,
# patience 10, epsilon 1e-4) as a callback.
_COMMON = tuple(replace(p, default=10) if p.name == "reduce_lr_patience" else p
                for p in COMMON_PARAMS)

# Defaults follow upstream Pilot1/NT3/nt3_default_model.txt.
BENCHMARK = Benchmark(
    name="nt3",
    description="normal vs tumour (2 classes), Conv1D stack on 60,483 expression features",
    mutable=MUTABLE_PARAMS,
    runner="candle_benchmarks.nt3.train",
    predictor="candle_benchmarks.expression_predict:open_nt3",
    metrics=("loss", "accuracy", "val_loss", "val_accuracy", "lr", "params_count"),
    # 2: upstream's ReduceLROnPlateau (patience 10) is on by default.
    version=2,
    params=(
        *_COMMON,
        Param("classes", "int", 2, "number of output classes"),
        *CONV_CLASSIFIER_PARAMS,
        Param("features", "int", 60483, "synthetic: expression features per sample"),
        Param("samples", "int", 1400, "synthetic: total samples (train + test)"),
        Param("signal_genes", "float", 0.1, "synthetic: fraction of genes that differ"),
        Param("signal_strength", "float", 1.0, "synthetic: log-fold change of those genes"),
        Param("test_fraction", "float", 0.2, "synthetic: held-out test share"),
    ),
)
