"""P1B3: drug-response regression (percent growth of NCI60 cell lines), MLP (Pilot1/P1B3)."""

from dataclasses import replace

from candle.api import Benchmark, Param
from candle_benchmarks._base import COMMON_PARAMS, MUTABLE_PARAMS

# Upstream p1b3_default_model.txt: batch_size=100, epochs=1, learning_rate=0.001,
# rng_seed=2017 (optimizer sgd, the common default).
_OVERRIDES = {"batch_size": 100, "epochs": 1, "learning_rate": 0.001, "rng_seed": 2017}
_COMMON = tuple(replace(p, default=_OVERRIDES[p.name]) if p.name in _OVERRIDES else p
                for p in COMMON_PARAMS)

# Upstream's default input is 1 (log concentration) + 25,722 expression levels + 3,809 drug
# descriptors = 29,532 (P1B3 README "Total input dimensions"); the synthetic feature counts
# default to those sizes so `build(defaults)` is the upstream model (30,088,701 weights).
BENCHMARK = Benchmark(
    name="p1b3",
    description="drug response: percent growth from cell expression, drug descriptors and "
                "log concentration, MLP 1000-500-100-50",
    mutable=MUTABLE_PARAMS,
    runner="candle_benchmarks.p1b3.train",
    predictor="candle_benchmarks.p1b3.predict",
    metrics=("loss", "mse", "mae", "r2", "val_loss", "val_mse", "val_mae", "val_r2", "lr",
             "params_count"),
    params=(
        *_COMMON,
        Param("dense", "ints", [1000, 500, 100, 50], "units of the dense layers"),
        Param("conv", "ints", [],
              "conv layers as (filters, kernel, stride) triples before the dense layers; "
              "upstream p1b3_conv_model.txt is conv=10,10,5,10,10,5 with dense empty"),
        Param("pool", "int", 10, "max-pool size after each conv layer (0: none)"),
        Param("activation", "str", "relu", "hidden activation"),
        Param("dropout", "float", 0.1, "dropout after each dense/conv block"),
        Param("batch_norm", "bool", False, "BatchNormalization between layer and activation"),
        Param("initialization", "str", "normal",
              "kernel initializer; 'normal' is Keras 2's RandomNormal(stddev=0.05)"),
        Param("loss", "str", "mse", "Keras loss (target is GROWTH/100, as upstream)"),
        Param("scaling", "str", "std", "feature scaling of cell and drug tables",
              ("std", "minmax", "maxabs", "none")),
        Param("val_split", "float", 0.1, "holdout share of rows when not cross-validating"),
        Param("min_logconc", "float", -5.0, "lowest log10 concentration kept"),
        Param("max_logconc", "float", -4.0, "highest log10 concentration kept"),
        Param("subsample", "str", "naive_balancing",
              "upstream growth re-balancing of the response rows", ("naive_balancing", "none")),
        Param("cells", "int", 60, "synthetic: cell lines"),
        Param("drugs", "int", 100, "synthetic: drugs"),
        Param("cell_features", "int", 25722, "synthetic: expression features per cell line"),
        Param("drug_features", "int", 3809, "synthetic: descriptors per drug"),
        Param("concentrations", "int", 5, "synthetic: log concentrations per (drug, cell)"),
        Param("noise", "float", 8.0, "synthetic: growth noise (percentage points, sd)"),
        Param("studies", "strs", [],
              "synthetic: studies (screens), e.g. CCLE,CTRP,GDSC,NCI60,gCSI, each over its "
              "own subset of cell lines x drugs with its own growth offset, IC50 shift, "
              "steepness and noise (cross-study designs); []: one screen, no study ids"),
    ),
    # Leave-out and cross-study validation (issue 21): what candle's cv and stages
    # sections may ask of its data (see data.apply_design).
    designs=("groups", "holdout", "studies", "stages"),
    groups=("cell", "drug", "cell_drug", "study"),
)
