"""The upstream NT3/TC1 Conv1D classifier, shared because TC1 reuses NT3's stack."""

from __future__ import annotations

from typing import Any

from candle_benchmarks._keras import make_optimizer


def build_conv_classifier(tf: Any, params: dict[str, Any], width: int) -> Any:
    """Conv1D triples (filters, kernel, stride) each followed by its pool size, then dense
    layers with dropout, then ``classes`` outputs — as upstream nt3_baseline_keras2.py."""
    layers = tf.keras.layers
    conv = list(params["conv"])
    if len(conv) % 3:
        raise ValueError(f"conv must be (filters, kernel, stride) triples, got {conv}")
    pools = list(params["pool"])
    model = tf.keras.Sequential()
    model.add(layers.InputLayer(input_shape=(width, 1)))
    for i in range(0, len(conv), 3):
        filters, kernel, stride = conv[i : i + 3]
        model.add(layers.Conv1D(filters=filters, kernel_size=kernel, strides=stride,
                                padding="valid"))
        model.add(layers.Activation(params["activation"]))
        pool = pools[i // 3] if i // 3 < len(pools) else 0
        if pool:
            model.add(layers.MaxPooling1D(pool_size=pool))
    model.add(layers.Flatten())
    for units in params["dense"]:
        if units:
            model.add(layers.Dense(units))
            model.add(layers.Activation(params["activation"]))
            if params["dropout"]:
                model.add(layers.Dropout(params["dropout"]))
    model.add(layers.Dense(params["classes"]))
    model.add(layers.Activation(params["out_activation"]))
    model.compile(loss=params["loss"], optimizer=make_optimizer(tf, params),
                  metrics=["accuracy"])
    return model
