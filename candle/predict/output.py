"""One output row per sample: the ensemble's prediction and its uncertainty (pure NumPy).

Classifiers: ``prob_0..prob_{k-1}`` (mean probability over members x passes), ``class``
(the most probable), ``std`` (std of that class's probability across members x passes),
``entropy`` (of the mean probabilities, nats); with labels ``label``, ``prob_label`` (the
mean probability of the true class) and ``correct`` (0/1).

Regression: ``mean``, ``std`` (across members x passes); a heteroscedastic head adds
``sigma`` (the members' predicted std, root mean square) and ``total_std`` (sqrt(std^2 +
sigma^2)); a quantile head its quantiles ``q0.025`` ... (mean over members x passes);
``lower_95``/``upper_95`` the central 95% interval (quantile head: its q0.025/q0.975,
else mean -/+ 1.96 x total std) whenever there is a spread; with labels the target (e.g.
``GROWTH``), ``abs_error`` and ``in_95``. The benchmark's id columns come first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Z95 = 1.959963984540054
EPS = 1e-12


@dataclass
class Layout:
    """The output columns, fixed before the first chunk (every chunk writes the same)."""

    kind: str
    classes: int = 0
    labelled: bool = False
    head: str = ""  # "", "heteroscedastic" or "quantile"
    levels: tuple[float, ...] = ()
    interval: bool = False  # regression: a spread to draw an interval from
    target: str = "label"
    unit: float = 1.0
    ids: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        names = ["row", *self.ids]
        if self.kind == "classification":
            names += [f"prob_{k}" for k in range(self.classes)]
            names += ["class", "std", "entropy"]
            if self.labelled:
                names += ["label", "prob_label", "correct"]
            return names
        names += ["mean", "std"]
        if self.head == "heteroscedastic":
            names += ["sigma", "total_std"]
        if self.head == "quantile":
            names += [f"q{level:.3g}" for level in self.levels]
        if self.interval:
            names += ["lower_95", "upper_95"]
        if self.labelled:
            names += [self.target, "abs_error"] + (["in_95"] if self.interval else [])
        return names


def classify(samples: NDArray[np.float32], labels: NDArray[Any] | None
             ) -> dict[str, NDArray[Any]]:
    """``samples`` (S, n, k): class probabilities of every member x pass."""
    stack = samples.astype(np.float64)
    mean = stack.mean(axis=0)
    predicted = mean.argmax(axis=1)
    rows = np.arange(len(predicted))
    out: dict[str, NDArray[Any]] = {f"prob_{k}": mean[:, k] for k in range(mean.shape[1])}
    out["class"] = predicted
    out["std"] = stack[:, rows, predicted].std(axis=0)
    out["entropy"] = -(mean * np.log(np.clip(mean, EPS, 1.0))).sum(axis=1)
    if labels is not None:
        out["label"] = labels
        out["prob_label"] = mean[rows, labels]
        out["correct"] = (predicted == labels).astype(np.int64)
    return out


def regress(outputs: list[dict[str, Any]], labels: NDArray[Any] | None, layout: Layout
            ) -> dict[str, NDArray[Any]]:
    """``outputs``: every member x pass, each {"mean", ["sigma" | "quantiles"]} (n,...)."""
    means = np.stack([np.asarray(o["mean"], dtype=np.float64) for o in outputs])
    mean = means.mean(axis=0)
    std = means.std(axis=0)
    out: dict[str, NDArray[Any]] = {"mean": mean, "std": std}
    total = std
    if layout.head == "heteroscedastic":
        sigma = np.sqrt(np.mean(np.square([np.asarray(o["sigma"], dtype=np.float64)
                                           for o in outputs]), axis=0))
        total = np.sqrt(np.square(std) + np.square(sigma))
        out.update(sigma=sigma, total_std=total)
    lower, upper = mean - Z95 * total, mean + Z95 * total
    if layout.head == "quantile":
        quantiles = np.mean([np.asarray(o["quantiles"], dtype=np.float64) for o in outputs],
                            axis=0)
        for index, level in enumerate(layout.levels):
            out[f"q{level:.3g}"] = quantiles[:, index]
        lower = quantiles[:, _nearest(layout.levels, 0.025)]
        upper = quantiles[:, _nearest(layout.levels, 0.975)]
    if layout.interval:
        out.update(lower_95=lower, upper_95=upper)
    for name in list(out):
        out[name] = out[name] * layout.unit
    if labels is not None:
        truth = np.asarray(labels, dtype=np.float64) * layout.unit
        out[layout.target] = truth
        out["abs_error"] = np.abs(out["mean"] - truth)
        if layout.interval:
            inside = (truth >= out["lower_95"]) & (truth <= out["upper_95"])
            out["in_95"] = np.where(np.isnan(truth), np.nan, inside.astype(np.float64))
    return out


def _nearest(levels: tuple[float, ...], level: float) -> int:
    return int(np.argmin(np.abs(np.asarray(levels) - level)))


def _text(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{float(value):.6g}"
    if value is None:
        return ""
    return str(value)


def format_rows(layout: Layout, first_row: int, ids: dict[str, Any],
                values: dict[str, NDArray[Any]], n: int) -> str:
    """The chunk's CSV lines (values with 6 significant digits; NaN and None empty)."""
    names = layout.columns()
    columns: list[Any] = []
    for name in names:
        if name == "row":
            columns.append(range(first_row, first_row + n))
        elif name in ids:
            columns.append(ids[name])
        else:
            columns.append(values[name].tolist())
    quote: Callable[[str], str] = _csv_field
    return "".join(",".join(quote(_text(v)) for v in row) + "\n" for row in zip(*columns,
                                                                                 strict=True))


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
