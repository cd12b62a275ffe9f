"""``search.seed_from``: start a run from a previous one. Called once the run directory is
planned (and locked), before any job runs: locally by `candle run`, on a cluster by the
login node's `candle run` before it submits (so an array never submits a reused job)."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable
from typing import Any

from candle.adaptive.seed import SeedReport
from candle.benchmark import BUILTIN
from candle.errors import UserError
from candle.spec.model import Sweep
from candle.store.run_store import RunStore

KEY = "search.seed_from"


def apply_seed(store: RunStore, sweep: Sweep,
               on_notice: Callable[[str], None] | None = None) -> None:
    """Optuna: the source's results become the study's first finished trials (once);
    grid, random, list: the source's done jobs identical to planned ones are reused."""
    path = sweep.search.seed_from
    if path is None:
        return
    notice = on_notice or (lambda message: None)
    source: RunStore | None = None
    if path.is_dir():
        source = RunStore(path)
        if not source.exists():
            raise _error(sweep, f"{path} is not a candle run directory (no plan.jsonl / "
                                "run.json)")
        if path.resolve() == store.root.resolve():
            raise _error(sweep, f"{path} is this run's own directory; name a previous run")
        manifest = source.manifest()
        if manifest.benchmark != sweep.benchmark:
            raise _error(sweep, f"{path} ran benchmark {manifest.benchmark}; this sweep runs "
                                f"{sweep.benchmark}")
        if sweep.benchmark not in BUILTIN and \
                manifest.base_dir.resolve() != sweep.base_dir.resolve():
            # A job id names a user model by module name only: the same id there is
            # another model's.
            nothing = "seeded" if sweep.search.method == "optuna" else "reused"
            notice(f"{path} ran {sweep.benchmark} from {manifest.base_dir}, not "
                   f"{sweep.base_dir}; its user model lives in another folder: nothing "
                   f"{nothing}")
            return
    elif sweep.search.method != "optuna":  # the parser refuses it; a file changed since
        raise _error(sweep, f"{path} is not a run directory")
    if sweep.search.method != "optuna":
        from candle.store.reuse import reuse_results

        assert source is not None
        notice(f"reused {reuse_results(store, source)} result(s) from {path}")
        return
    notice(_seed_study(store, sweep, source).line())


def _seed_study(store: RunStore, sweep: Sweep, source: RunStore | None) -> SeedReport:
    from candle.adaptive.seed import Expected, csv_points, run_points, seed_study, text_value
    from candle.adaptive.study import open_study
    from candle.benchmark import ParamError, find_benchmark
    from candle.plan.jobs import JobSettings

    manifest = store.manifest()
    config = manifest.optuna
    assert config is not None and sweep.search.seed_from is not None
    study = open_study(store.root, config)
    definition = find_benchmark(sweep.benchmark, sweep.base_dir)
    if source is not None:
        defaults = definition.defaults() if definition is not None else {}
        expected = Expected(defaults=defaults, params={**defaults, **sweep.params},
                            searched=frozenset(config.space),
                            settings=JobSettings.of(sweep).record(),
                            folds=sweep.cv.folds if sweep.cv else None)
        points = run_points(source, config.metrics, expected)
        return seed_study(study, config, points, str(sweep.search.seed_from))

    def coerce(name: str, text: str) -> Any:
        param = definition.param(name) if definition is not None else None
        if param is None:
            return text_value(text)
        try:  # a list-valued param's cell may be JSON ("[500, 100]") or "500 100"
            return param.coerce(text_value(text) if text.startswith("[") else text)
        except ParamError as exc:
            raise ValueError(str(exc)) from None

    try:
        points = csv_points(sweep.search.seed_from, list(config.space), config.metrics, coerce)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:  # csv.Error: "line N: ..."
        raise _error(sweep, f"cannot read {sweep.search.seed_from}: {exc}") from None
    return seed_study(study, config, points, str(sweep.search.seed_from))


def _error(sweep: Sweep, message: str) -> UserError:
    from candle.spec.yaml_lines import key_line

    line = None
    with contextlib.suppress(UserError):
        line = key_line(sweep.source, ("search", "seed_from"))
    return UserError(message, file=sweep.source, line=line, key=KEY)
