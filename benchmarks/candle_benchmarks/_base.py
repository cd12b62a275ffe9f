"""The parameters the built-in benchmarks share. The contract they fill (Benchmark, Param)
is candle's public API, `candle.api`; this package imports nothing else of candle."""

from __future__ import annotations

from candle.api import TRAINING_PARAMS, Param

# The optimizer names a sweep may give, and their tf.keras.optimizers classes.
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad",
              "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam"}

# What population-based training may change between a member's segments: none of them
# changes the weights' shapes, so a segment loads any other member's checkpoint.
MUTABLE_PARAMS = ("learning_rate", "dropout", "batch_size")

# Parameters every built-in benchmark shares (upstream candle_lib "default" group + ours).
COMMON_PARAMS: tuple[Param, ...] = (
    Param("epochs", "int", 400, "number of training epochs"),
    Param("batch_size", "int", 20, "samples per gradient step (per rank)"),
    Param("learning_rate", "float", 0.001, "optimizer learning rate"),
    Param("optimizer", "str", "sgd", "Keras optimizer name", tuple(OPTIMIZERS)),
    Param("rng_seed", "int", 7102, "seed for data synthesis, initialisation and shuffling"),
    Param("data", "str", "synthetic", "'synthetic' or a directory holding the upstream files"),
    Param("verbose", "int", 0, "Keras fit verbosity (0 silent, 2 one line per epoch)"),
    Param("ckpt_keep_limit", "int", 1, "checkpoints kept while a job trains (a done job "
          "keeps its final model only)"),
    Param("ckpt_every", "str", "auto", "checkpoint every N epochs ('1'; '0': only on a "
          "drain), every S seconds ('300s') or 'auto' (as often as keeps saving within 2% "
          "of the job's time); a drain always saves"),
    Param("ckpt_restart_mode", "str", "auto", "resume from the job's checkpoint",
          ("auto", "off", "required")),
    Param("scale_lr_by_ranks", "bool", True, "multiply learning_rate by the Horovod size"),
    *TRAINING_PARAMS,  # early stopping, ReduceLROnPlateau, warm-up (candle.api)
)

# The upstream NT3/TC1 Conv1D classifier's own parameters (both benchmarks share them).
CONV_CLASSIFIER_PARAMS: tuple[Param, ...] = (
    Param("conv", "ints", [128, 20, 1, 128, 10, 1],
          "conv layers as (filters, kernel, stride) triples"),
    Param("pool", "ints", [1, 10], "max-pool size after each conv layer (0: none)"),
    Param("dense", "ints", [200, 20], "units of the dense layers"),
    Param("activation", "str", "relu", "hidden activation"),
    Param("out_activation", "str", "softmax", "output activation"),
    Param("dropout", "float", 0.1, "dropout after each dense layer"),
    Param("loss", "str", "categorical_crossentropy", "Keras loss"),
)
