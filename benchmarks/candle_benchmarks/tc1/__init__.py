"""TC1: tumour-type classification from RNA-seq expression (Pilot1/TC1), 1-D conv."""

from dataclasses import replace

from candle.api import Benchmark, Param
from candle_benchmarks._base import COMMON_PARAMS, CONV_CLASSIFIER_PARAMS, MUTABLE_PARAMS

# Upstream tc1_default_model.txt names no learning rate: it compiles optimizer='sgd', i.e.
# Keras' default SGD, whose learning rate is 0.01.
# Upstream's run() also adds ReduceLROnPlateau(val_loss, factor 0.1, patience 10).
_OVERRIDES = {"learning_rate": 0.01, "reduce_lr_patience": 10}
_COMMON = tuple(replace(p, default=_OVERRIDES[p.name]) if p.name in _OVERRIDES else p
                for p in COMMON_PARAMS)

# Defaults follow upstream Pilot1/TC1/tc1_default_model.txt.
BENCHMARK = Benchmark(
    name="tc1",
    description="tumour type (36 classes), NT3's Conv1D stack on 60,483 expression features",
    mutable=MUTABLE_PARAMS,
    runner="candle_benchmarks.tc1.train",
    predictor="candle_benchmarks.expression_predict:open_tc1",
    metrics=("loss", "accuracy", "val_loss", "val_accuracy", "lr", "params_count"),
    params=(
        *_COMMON,
        Param("classes", "int", 36, "number of output classes (upstream data uses 18)"),
        *CONV_CLASSIFIER_PARAMS,
        Param("features", "int", 60483, "synthetic: expression features per sample"),
        Param("samples", "int", 1500, "synthetic: total samples (train + test)"),
        Param("signal_genes", "float", 0.02,
              "synthetic: fraction of genes in each class's expression programme"),
        Param("signal_strength", "float", 0.8, "synthetic: log-fold change of those genes"),
        Param("test_fraction", "float", 0.2, "synthetic: held-out test share"),
    ),
)
