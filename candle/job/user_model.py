"""Call a user's ``package.module:function`` model the way the sweep contract says."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_function(spec: str, base_dir: Path) -> Callable[..., Any]:
    """Import ``module:function`` with the sweep file's folder first on sys.path."""
    module_name, _, func_name = spec.partition(":")
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    module = importlib.import_module(module_name)
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise AttributeError(f"{module_name} has no function {func_name!r}")
    return fn  # type: ignore[no-any-return]


def metrics_from(returned: Any) -> tuple[dict[str, float], dict[str, list[float]]]:
    """A dict of metrics, or a Keras History whose last epoch counts."""
    history = getattr(returned, "history", None)
    if isinstance(history, dict):
        series = {str(k): [float(x) for x in v] for k, v in history.items()}
        return {k: v[-1] for k, v in series.items() if v}, series
    if isinstance(returned, dict):
        return {str(k): float(v) for k, v in returned.items()}, {}
    raise TypeError(f"a user model must return a dict of metrics or a Keras History, "
                    f"got {type(returned).__name__}")
