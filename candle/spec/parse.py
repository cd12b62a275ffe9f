"""sweep.yaml → Sweep, with every mistake reported as ``FILE:LINE: KEY: message``."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candle.benchmark import (
    BUILTIN,
    GROUP_KINDS,
    Benchmark,
    ParamError,
    find_benchmark,
    names_definition,
)
from candle.errors import UserError
from candle.spec.checks import Ctx, kind_of, printable
from candle.spec.model import (
    EPOCH_SCHEDULES,
    NOISE_KINDS,
    NOISE_PARAM,
    UQ_LOSSES,
    UQ_METHODS,
    Choice,
    CVSpec,
    Dimension,
    IntRange,
    Resources,
    SearchSpec,
    StagesSpec,
    Sweep,
    Uniform,
    UQSpec,
    walltime_seconds,
)
from candle.spec.yaml_lines import KeyPath, load_yaml

if TYPE_CHECKING:
    from candle.spec.site import SiteConfig

TOP_KEYS = ("name", "benchmark", "params", "search", "cv", "uq", "training", "resources",
            "retries", "store", "stages")
SEARCH_KEYS = ("method", "space", "points", "trials", "seed", "metric", "direction", "sampler",
               "pruner", "batch", "seed_from", "population", "ready", "exploit", "explore",
               "schedule")
OPTUNA_ONLY = ("sampler", "pruner", "batch")
PBT_ONLY = ("population", "ready", "exploit", "explore", "schedule")
CV_KEYS = ("folds", "seed", "stratify", "groups", "holdout", "repeats", "train_studies",
           "test_studies")
STAGES_KEYS = ("depth", "children", "split", "epochs", "baseline")
MAX_HOLDOUT = 0.9  # a test set larger than this leaves too little to train on
MAX_DEPTH = 20  # 2 children: 2^21 - 2 nodes, already more than one sweep plans
UQ_KEYS = ("method", "replicas", "samples", "noise_levels", "noise", "loss")
DEFAULT_MC_SAMPLES = 20
DATA_PARAM = "data"  # the built-ins' dataset: "synthetic" or a directory
TRAINING_KEYS = ("early_stopping", "reduce_lr", "warmup_epochs", "job_timeout")
# training.<control>.<key> -> the benchmark parameter it sets (candle.api.TRAINING_PARAMS)
CONTROL_PARAMS = {
    "early_stopping": {"patience": "early_stopping_patience",
                       "min_delta": "early_stopping_min_delta",
                       "monitor": "early_stopping_monitor",
                       "restore_best": "restore_best_weights"},
    "reduce_lr": {"patience": "reduce_lr_patience", "factor": "reduce_lr_factor",
                  "min_delta": "reduce_lr_min_delta"},
}
RESOURCE_KEYS = ("scheduler", "ranks_per_job", "max_concurrent", "walltime", "nodes",
                 "slots_per_node", "gpus_per_node", "oversubscribe", "mode", "array_throttle",
                 "site", "signal_lead", "workers")
DEFAULT_SIGNAL_LEAD = 180  # seconds: an epoch of a real benchmark, and Slurm's 60 s slack
MODES = ("pack", "array")
WORKER_MODES = ("warm", "process")  # candle.job.worker forks warm jobs
DEFAULT_WORKERS = "warm"
METHODS = ("grid", "random", "list", "optuna", "pbt")
SCHEDULERS = ("local", "slurm", "pbs")
# A sweep that names no site gets one that assumes nothing about the cluster (candle/sites/);
# the emulated test cluster (local-slurm) only where it is named.
DEFAULT_SITES = {"slurm": "generic-slurm", "pbs": "generic-pbs"}
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
WALLTIME_RE = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")
USER_MODEL_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Planned up front and written one line each to plan.jsonl: beyond this, a typo (one zero
# too many in trials or folds) would keep `candle plan` busy for hours. Split such a sweep.
MAX_JOBS = 1_000_000
MAX_SEED = 2**32 - 1  # numpy, scikit-learn and Optuna's samplers take 32-bit seeds
MAX_NODES = 100_000  # above every machine candle's schedulers run on
MAX_GPUS_PER_NODE = 64


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; raise UserError on the first problem."""
    file = Path(path)
    data, lines, text = load_yaml(file)
    ctx = Ctx(file, lines)
    if data is None:
        raise UserError("the file is empty; a sweep needs at least name and benchmark", file=file)
    top = ctx.mapping(data, (), TOP_KEYS)
    for required in ("name", "benchmark"):
        if required not in top:
            raise ctx.fail((), f"missing required key '{required}'")

    name = ctx.string(top["name"], ("name",))
    if not NAME_RE.match(name):
        raise ctx.fail(("name",), "use letters, digits, '.', '_' or '-' (it names a directory)")
    benchmark = ctx.string(top["benchmark"], ("benchmark",))
    definition = _benchmark(ctx, benchmark)

    params = _params(ctx, top.get("params"), definition)
    controls, job_timeout = _training(ctx, top.get("training"), definition, params)
    params.update(controls)
    search = _search(ctx, top.get("search"), definition)
    if search.method == "pbt":
        search = _pbt(ctx, top["search"], search, definition, params)
    cv = _cv(ctx, top.get("cv"), tree=top.get("stages") is not None)
    stages = _stages(ctx, top.get("stages"), cv, search)
    _check_designs(ctx, definition, benchmark, cv, stages)
    _check_synthetic_studies(ctx, definition, params, cv, stages)
    if stages is not None and definition is not None and "restore_best_weights" not in params \
            and definition.param("restore_best_weights") is not None:
        params["restore_best_weights"] = True  # a child starts from its parent's best weights
    uq = _uq(ctx, top.get("uq"), benchmark, params, search)
    if search.method == "pbt":
        for key, given in (("cv", cv), ("uq", uq)):
            if given is not None:
                raise ctx.fail((key,), f"population-based training runs one model per member; "
                                       f"{key} is not supported with search method pbt")
    resources = _resources(ctx, top.get("resources"))
    _check_search_fits_mode(ctx, search, resources)
    _check_job_count(ctx, search, cv, uq, stages)
    retries = ctx.integer(top.get("retries", 1), ("retries",), 0)
    store_raw = ctx.string(top.get("store", "runs"), ("store",))
    if not store_raw.strip():
        raise ctx.fail(("store",), "must not be empty")
    if "\0" in store_raw:
        raise ctx.fail(("store",), "a path cannot contain a NUL character")
    base_dir = file.resolve().parent
    store = sweep_path(ctx, store_raw, ("store",))
    return Sweep(
        name=name, benchmark=benchmark, params=params, search=search, cv=cv, uq=uq,
        resources=resources, retries=retries, store=store, source=file.resolve(),
        base_dir=base_dir, text=text, job_timeout=job_timeout, stages=stages,
    )


def _benchmark(ctx: Ctx, benchmark: str) -> Benchmark | None:
    """A built-in's or a user's Benchmark (``module:NAME``, validated like a built-in), or
    None for a user's training function: its parameters are its own business."""
    if benchmark in BUILTIN or (USER_MODEL_RE.match(benchmark) and names_definition(benchmark)):
        try:
            return find_benchmark(benchmark, ctx.file.resolve().parent)
        except Exception as exc:  # a user's module may raise anything as it is imported
            raise ctx.fail(("benchmark",), f"cannot load {benchmark}: {exc}") from None
    if USER_MODEL_RE.match(benchmark):
        return None
    raise ctx.fail(
        ("benchmark",),
        f"unknown benchmark {benchmark!r}; use one of {', '.join(sorted(BUILTIN))} "
        "or 'package.module:function'",
    )


def _check_job_count(ctx: Ctx, search: SearchSpec, cv: CVSpec | None, uq: UQSpec | None,
                     stages: StagesSpec | None = None) -> None:
    """A static search is planned in full, up front: keep it to MAX_JOBS jobs."""
    if search.method in ("optuna", "pbt"):
        return  # asked trial by trial (segment by segment); trials (population) is a budget
    if search.method == "grid":
        points = math.prod(len(d.values) for d in search.space.values()
                           if isinstance(d, Choice))
        key: KeyPath = ("search", "space")
    elif search.method == "list":
        points, key = len(search.points), ("search", "points")
    else:
        points, key = search.trials, ("search", "trials")
    folds, replicas = (cv.folds or 1) * cv.repeats if cv else 1, uq.replicas if uq else 1
    if stages is not None:
        folds = stages.jobs_per_replica()  # the tree's nodes (and baselines) per replica
    points *= max(1, len(uq.noise_levels)) if uq else 1
    jobs = points * folds * replicas
    if jobs > MAX_JOBS:
        raise ctx.fail(key, f"{points:,} points x {folds:,} folds x {replicas:,} replicas = "
                            f"{jobs:,} jobs, more than one sweep plans ({MAX_JOBS:,}); "
                            "narrow the search or split it into several sweeps")


def _check_param(
    ctx: Ctx, definition: Benchmark | None, name: str, value: Any, path: KeyPath
) -> Any:
    if definition is None:
        return ctx.plain(value, path)
    param = definition.param(name)
    if param is None:
        raise _unknown_param(ctx, definition, name, path)
    try:
        coerced = param.coerce(value)
    except ParamError as exc:
        raise ctx.fail(path, f"{exc}") from None
    if name == DATA_PARAM and isinstance(coerced, str) and coerced != "synthetic":
        # A data directory is relative to the sweep file, like `store`, and absolute in
        # the job's params: jobs run from wherever `candle run` (or the batch script)
        # started, and the job id then names the data it read.
        coerced = str(sweep_path(ctx, coerced, path, resolve=True))
    return coerced


def sweep_path(ctx: Ctx, text: str, where: KeyPath, resolve: bool = False) -> Path:
    """A path the sweep names: ``~`` expanded, relative to the sweep file's folder (like
    `store`); ``~nobody``, a NUL or a symlink loop is one line naming the key."""
    try:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = ctx.file.resolve().parent / path
        return path.resolve() if resolve else path
    except (OSError, RuntimeError, ValueError) as exc:  # ~nobody, a NUL, a loop, ...
        raise ctx.fail(where, f"cannot use {printable(text)}: {printable(str(exc))}") from None


def _unknown_param(ctx: Ctx, definition: Benchmark, name: str, path: KeyPath) -> UserError:
    names = sorted(p.name for p in definition.params)
    return ctx.fail(path, f"benchmark {definition.name} has no parameter {name!r}"
                          f"{did_you_mean(name, names)}; its parameters: {', '.join(names)}")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest known name, or '' when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_metrics(ctx: Ctx, metrics: tuple[str, ...], definition: Benchmark) -> None:
    """A built-in benchmark declares what it reports: a typo is caught before any job
    trains to its end and then fails for want of the metric."""
    for i, metric in enumerate(metrics):
        if metric not in definition.metrics:
            path: KeyPath = ("search", "metric", i) if len(metrics) > 1 else ("search", "metric")
            raise ctx.fail(path, f"benchmark {definition.name} does not report {metric!r}"
                                 f"{did_you_mean(metric, definition.metrics)}; it reports: "
                                 f"{', '.join(definition.metrics)}")


def _params(ctx: Ctx, raw: Any, definition: Benchmark | None) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ctx.fail(("params",), f"expected a mapping, got {kind_of(raw)}")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            raise ctx.fail(("params",), f"parameter names must be strings, got {name!r}")
        out[name] = _check_param(ctx, definition, name, value, ("params", name))
    if "rng_seed" in out:  # the jobs' seeds are computed from it, for user models too
        ctx.integer(out["rng_seed"], ("params", "rng_seed"), 0, MAX_SEED)
    return out


def _training(ctx: Ctx, raw: Any, definition: Benchmark | None, params: dict[str, Any]
              ) -> tuple[dict[str, Any], float]:
    """The ``training:`` section: early stopping, LR reduction and warm-up become the
    benchmark params they name (so they are part of every job id); ``job_timeout`` is the
    supervisor's (seconds, or [D-]HH:MM:SS)."""
    if raw is None:
        return {}, 0.0
    t = ctx.mapping(raw, ("training",), TRAINING_KEYS)
    controls: dict[str, Any] = {}
    where_set: dict[str, KeyPath] = {}  # param -> the training key that set it
    for control, names in CONTROL_PARAMS.items():
        if control not in t:
            continue
        value = t[control]
        path: KeyPath = ("training", control)
        if value is False:
            value = {"patience": 0}
        elif isinstance(value, int) and not isinstance(value, bool):
            value = {"patience": value}  # `early_stopping: 5`: the patience
        options = ctx.mapping(value, path, tuple(names))
        if "patience" not in options:
            raise ctx.fail(path, "missing 'patience' (epochs without improvement)")
        for key, option in options.items():
            where: KeyPath = (*path, key)
            if key == "patience":
                option = ctx.integer(option, where, 0)
            elif key == "monitor":
                option = ctx.string(option, where)
            elif key == "restore_best":
                option = ctx.boolean(option, where)
            else:
                option = ctx.number(option, where)
                if option < 0 or (key == "factor" and not 0 < option < 1):
                    bounds = "between 0 and 1 (exclusive)" if key == "factor" else ">= 0"
                    raise ctx.fail(where, f"must be {bounds}, got {option}")
            controls[names[key]] = option
            where_set[names[key]] = path
    if "warmup_epochs" in t:
        path = ("training", "warmup_epochs")
        controls["warmup_epochs"] = ctx.integer(t["warmup_epochs"], path, 0)
        where_set["warmup_epochs"] = path
    for name, value in controls.items():
        path = where_set[name]
        if name in params:
            raise ctx.fail(("params", name), f"also set by {'.'.join(map(str, path))}; "
                                             "keep one")
        if definition is not None:
            if definition.param(name) is None:
                raise ctx.fail(path, f"benchmark {definition.name} has no parameter "
                                     f"{name!r}: add candle.api.TRAINING_PARAMS to its params "
                                     "to take training controls")
            _check_param(ctx, definition, name, value, path)
    monitor = controls.get("early_stopping_monitor")
    if monitor is not None and definition is not None and definition.metrics \
            and monitor not in definition.metrics:
        raise ctx.fail(("training", "early_stopping", "monitor"),
                       f"benchmark {definition.name} does not report {monitor!r}"
                       f"{did_you_mean(monitor, definition.metrics)}; it reports: "
                       f"{', '.join(definition.metrics)}")
    timeout = 0.0
    if "job_timeout" in t:
        value = t["job_timeout"]
        path = ("training", "job_timeout")
        if isinstance(value, str) and WALLTIME_RE.match(value):
            timeout = float(walltime_seconds(value))
        else:
            timeout = ctx.number(value, path)
        if timeout <= 0:
            raise ctx.fail(path, f"must be > 0 seconds, got {value!r}")
    return controls, timeout


def _search(ctx: Ctx, raw: Any, definition: Benchmark | None) -> SearchSpec:
    if raw is None:
        raw = {"method": "list", "points": [{}]}
    s = ctx.mapping(raw, ("search",), SEARCH_KEYS)
    method = ctx.string(s.get("method", "grid"), ("search", "method"), METHODS)
    if method != "optuna":
        for key in OPTUNA_ONLY:
            if key in s:
                raise ctx.fail(("search", key), "only for method optuna")
    if method != "pbt":
        for key in PBT_ONLY:
            if key in s:
                raise ctx.fail(("search", key), "only for method pbt")
    metrics, directions = _objectives(ctx, s, multi=method == "optuna")
    if definition is not None:
        _check_metrics(ctx, metrics, definition)
    seed = ctx.integer(s.get("seed", 0), ("search", "seed"), 0, MAX_SEED)
    trials = ctx.integer(s.get("trials", 10), ("search", "trials"), 1)
    space: dict[str, Dimension] = {}
    points: tuple[dict[str, Any], ...] = ()

    if method == "list":
        if "points" not in s:
            raise ctx.fail(("search",), "method list needs 'points'")
        raw_points = s["points"]
        if not isinstance(raw_points, list) or not raw_points:
            raise ctx.fail(("search", "points"), "expected a non-empty list of mappings")
        checked = []
        for i, point in enumerate(raw_points):
            if point is None:
                point = {}
            if not isinstance(point, Mapping):
                raise ctx.fail(("search", "points", i), f"expected a mapping, got {kind_of(point)}")
            for k in point:
                if not isinstance(k, str):
                    raise ctx.fail(("search", "points", i),
                                   f"parameter names must be strings, got {k!r}")
            checked.append({
                str(k): _check_param(ctx, definition, str(k), v, ("search", "points", i, str(k)))
                for k, v in point.items()
            })
            same = next((j for j, earlier in enumerate(checked[:-1])
                         if earlier == checked[-1]), None)
            if same is not None:  # the same job ids twice: two runs in one job folder
                raise ctx.fail(("search", "points", i),
                               f"the same point as points[{same}]; list each point once")
        points = tuple(checked)
    else:
        if "space" not in s:
            raise ctx.fail(("search",), f"method {method} needs 'space'")
        raw_space = s["space"]
        if not isinstance(raw_space, Mapping) or not raw_space:
            raise ctx.fail(("search", "space"), "expected a non-empty mapping of parameters")
        for name, spec in raw_space.items():
            if not isinstance(name, str):
                raise ctx.fail(("search", "space"), f"parameter names must be strings, got "
                                                    f"{name!r}")
            path: KeyPath = ("search", "space", name)
            if definition is not None and definition.param(str(name)) is None:
                raise _unknown_param(ctx, definition, str(name), path)
            space[str(name)] = _dimension(ctx, spec, path, method, definition, str(name))
    spec = SearchSpec(method=method, space=space, points=points, trials=trials, seed=seed,
                      metric=metrics[0], direction=directions[0], metrics=metrics,
                      directions=directions,
                      seed_from=_seed_from(ctx, s["seed_from"], method, metrics)
                      if "seed_from" in s else None)
    if method == "optuna":
        spec = _optuna(ctx, s, spec)
    return spec


def _seed_from(ctx: Ctx, raw: Any, method: str, metrics: tuple[str, ...]) -> Path:
    """search.seed_from: a previous run directory (any method), or a CSV with a header row
    (optuna only), resolved against the sweep file's folder. A CSV must have a column for
    each metric; columns named like searched params are read, any others ignored."""
    import csv

    where: KeyPath = ("search", "seed_from")
    text = ctx.string(raw, where)
    if not text.strip() or "\0" in text:
        raise ctx.fail(where, "expected the path of a run directory or a .csv file")
    path = sweep_path(ctx, text, where)
    shown = printable(str(path))
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
        has_run = is_dir and (path / "run.json").is_file()
    except (OSError, RuntimeError, ValueError) as exc:  # ~nobody, a name too long, ...
        raise ctx.fail(where, f"cannot use {shown}: {printable(str(exc))}") from None
    if is_dir:
        if not has_run:
            raise ctx.fail(where, f"{shown} is not a candle run directory (no run.json)")
        return path
    if not is_file:
        raise ctx.fail(where, f"{shown} does not exist: name a run directory or a .csv file "
                              "(a study already seeded from it can drop search.seed_from)")
    if path.suffix.lower() != ".csv":
        raise ctx.fail(where, f"{shown} is neither a run directory nor a .csv file")
    if method != "optuna":
        raise ctx.fail(where, f"a CSV holds no job results to reuse; a {method} search "
                              "takes a previous run directory (a CSV seeds optuna only)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeError, csv.Error) as exc:
        raise ctx.fail(where, f"cannot read {shown}: {printable(str(exc))}") from None
    columns = [c.strip() for c in header or []]
    for metric in metrics:
        if metric not in columns:
            raise ctx.fail(where, printable(
                f"{shown} has no column {metric!r} (the sweep's metric); its header: "
                f"{', '.join(columns) or 'none'}"))
    return path


def _objectives(ctx: Ctx, s: dict[str, Any], multi: bool
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """metric: a name, or (optuna) a list of names; direction: one, or one per metric."""
    raw_metric = s.get("metric", "val_loss")
    if isinstance(raw_metric, list) and multi:
        if not raw_metric:
            raise ctx.fail(("search", "metric"), "expected a metric name or a list of them")
        metrics = tuple(ctx.string(m, ("search", "metric", i)) for i, m in enumerate(raw_metric))
        if len(set(metrics)) != len(metrics):
            raise ctx.fail(("search", "metric"), "a metric is listed twice")
    else:
        metrics = (ctx.string(raw_metric, ("search", "metric")),)
    raw_direction = s.get("direction", "minimize")
    choices = ("minimize", "maximize")
    if isinstance(raw_direction, list) and multi:
        directions = tuple(ctx.string(d, ("search", "direction", i), choices)
                           for i, d in enumerate(raw_direction))
        if len(directions) != len(metrics):
            raise ctx.fail(("search", "direction"), f"{len(directions)} directions for "
                                                    f"{len(metrics)} metrics")
    else:
        directions = (ctx.string(raw_direction, ("search", "direction"), choices),) * len(metrics)
    return metrics, directions


def _named_options(ctx: Ctx, raw: Any, path: KeyPath, names: tuple[str, ...]
                   ) -> tuple[str, dict[str, Any]]:
    """``tpe`` or ``{name: tpe, n_startup_trials: 5}`` → ("tpe", {"n_startup_trials": 5})."""
    if isinstance(raw, Mapping):
        if "name" not in raw:
            raise ctx.fail(path, f"missing 'name' (one of {', '.join(names)})")
        name = ctx.string(raw["name"], (*path, "name"), names)
        return name, {str(k): v for k, v in raw.items() if k != "name"}
    return ctx.string(raw, path, names), {}


def _optuna(ctx: Ctx, s: dict[str, Any], spec: SearchSpec) -> SearchSpec:
    from dataclasses import replace

    from candle.spec.samplers import (
        PRUNERS,
        SAMPLERS,
        OptionError,
        make_pruner,
        make_sampler,
        search_space,
    )

    sampler, sampler_options = _named_options(ctx, s.get("sampler", "tpe"),
                                              ("search", "sampler"), SAMPLERS)
    pruner, pruner_options = _named_options(ctx, s.get("pruner", "none"),
                                            ("search", "pruner"), PRUNERS)
    for options, part in ((sampler_options, "sampler"), (pruner_options, "pruner")):
        for option, value in options.items():
            ctx.plain(value, ("search", part, option))
    if pruner != "none" and len(spec.metrics) > 1:
        raise ctx.fail(("search", "pruner"), "Optuna cannot prune a multi-objective study; "
                                             "use pruner: none or a single metric")
    batch = ctx.integer(s.get("batch", 0), ("search", "batch"), 1) if "batch" in s else 0
    checks: list[tuple[dict[str, Any], KeyPath, Callable[[], Any]]] = [
        (sampler_options, ("search", "sampler"),
         lambda: make_sampler(sampler, sampler_options, spec.seed)),
        (pruner_options, ("search", "pruner"), lambda: make_pruner(pruner, pruner_options)),
    ]
    for options, path, make in checks:
        try:
            make()
        except OptionError as exc:
            where: KeyPath = (*path, exc.key) if exc.key and exc.key in options else path
            raise ctx.fail(where, str(exc)) from None
    try:
        search_space(spec.space)
    except OptionError as exc:
        raise ctx.fail(("search", "space", exc.key or ""), str(exc)) from None
    return replace(spec, sampler=sampler, sampler_options=sampler_options, pruner=pruner,
                   pruner_options=pruner_options, batch=batch)


def _pbt(ctx: Ctx, raw: dict[str, Any], spec: SearchSpec, definition: Benchmark | None,
         params: dict[str, Any]) -> SearchSpec:
    """search.population, ready, exploit.truncate, explore.perturb/resample; the training's
    length is params.epochs (a built-in's default when not given)."""
    from dataclasses import replace

    population = ctx.integer(raw.get("population", 8), ("search", "population"), 2, 100_000)
    default_epochs = definition.defaults().get("epochs") if definition is not None else None
    if "epochs" not in params and default_epochs is None:
        raise ctx.fail(("params",), "population-based training needs params.epochs (how "
                                    "long each member trains)")
    epochs = ctx.integer(params.get("epochs", default_epochs),
                         ("params", "epochs") if "epochs" in params else ("search",), 2)
    ready = ctx.integer(raw.get("ready", max(1, epochs // 5)), ("search", "ready"), 1)
    if ready >= epochs:
        raise ctx.fail(("search", "ready"), f"a ready point every {ready} epochs never comes "
                                            f"in {epochs} epochs; make it smaller")
    exploit = ctx.mapping(raw.get("exploit") or {}, ("search", "exploit"), ("truncate",))
    truncate = ctx.number(exploit.get("truncate", 0.2), ("search", "exploit", "truncate"))
    if not 0 < truncate <= 0.5:
        raise ctx.fail(("search", "exploit", "truncate"),
                       f"the quantile that exploits must be in (0, 0.5], got {truncate}")
    explore = ctx.mapping(raw.get("explore") or {}, ("search", "explore"),
                          ("perturb", "resample"))
    raw_perturb = explore.get("perturb", [0.8, 1.2])
    if not isinstance(raw_perturb, list) or not raw_perturb:
        raise ctx.fail(("search", "explore", "perturb"), "expected a list of factors, such "
                                                         "as [0.8, 1.2]")
    perturb = tuple(ctx.number(f, ("search", "explore", "perturb", i))
                    for i, f in enumerate(raw_perturb))
    if any(not f > 0 for f in perturb):
        raise ctx.fail(("search", "explore", "perturb"), "factors must be > 0")
    resample = ctx.number(explore.get("resample", 0.25), ("search", "explore", "resample"))
    if not 0 <= resample <= 1:
        raise ctx.fail(("search", "explore", "resample"),
                       f"a probability must be in [0, 1], got {resample}")
    if definition is None:  # a user's function: it applies whatever it is given
        mutable = tuple(spec.space)
    else:
        mutable = tuple(name for name in spec.space if name in definition.mutable)
        if not mutable:
            raise ctx.fail(("search", "space"), f"{definition.name} may change "
                                                f"{', '.join(definition.mutable) or 'nothing'} "
                                                "mid-training; search at least one of them")
    from candle.spec.model import PbtSpec

    schedule = _schedule(ctx, raw["schedule"], spec, definition, epochs, ready) \
        if "schedule" in raw else ()
    return replace(spec, pbt=PbtSpec(population, epochs, ready, truncate, perturb, resample,
                                     mutable, schedule))


def _schedule(ctx: Ctx, raw: Any, spec: SearchSpec, definition: Benchmark | None,
              epochs: int, ready: int) -> tuple[tuple[int, dict[str, Any]], ...]:
    """search.schedule: a fixed hyperparameter schedule (a PBT member's, replayed by
    `candle train --from`): [{start: epoch, params: {...}}, ...] from epoch 0, at ready
    points, every searched param given each time. Members then never exploit."""
    where: KeyPath = ("search", "schedule")
    if not isinstance(raw, list) or not raw:
        raise ctx.fail(where, "expected a list of {start: epoch, params: {...}}")
    out: list[tuple[int, dict[str, Any]]] = []
    for i, entry in enumerate(raw):
        item = ctx.mapping(entry, (*where, i), ("start", "params"))
        start = ctx.integer(item.get("start"), (*where, i, "start"), 0, epochs - 1)
        if (start == 0) != (i == 0) or (out and start <= out[-1][0]) or start % ready:
            raise ctx.fail((*where, i, "start"), f"starts go up from 0, at ready points "
                                                 f"(multiples of {ready}); got {start}")
        given = ctx.mapping(item.get("params") or {}, (*where, i, "params"), tuple(spec.space))
        missing = [name for name in spec.space if name not in given]
        if missing:
            raise ctx.fail((*where, i, "params"), f"missing {', '.join(missing)} (every "
                                                  "searched param, at every step)")
        out.append((start, {name: _check_param(ctx, definition, name, value,
                                               (*where, i, "params", name))
                            for name, value in given.items()}))
    return tuple(out)


def _check_search_fits_mode(ctx: Ctx, search: SearchSpec, resources: Resources) -> None:
    """An adaptive search needs someone to ask the next trial when a result comes back."""
    if search.method == "pbt" and resources.scheduler != "local" and resources.mode == "array":
        raise ctx.fail(("resources", "mode"),
                       "population-based training decides each member's next segment from "
                       "the others' scores as they come: use mode pack")
    if search.method != "optuna" or resources.scheduler == "local" or resources.mode != "array":
        return
    if not search.batch:
        raise ctx.fail(("resources", "mode"),
                       "mode array submits every job up front, but an optuna search picks "
                       "each trial from the results so far: use mode pack, or set "
                       "search.batch: N to ask N trials per array")
    if search.pruner != "none":
        raise ctx.fail(("search", "pruner"),
                       "pruning needs the packing supervisor to answer every epoch, and "
                       "array tasks have none: use mode pack, or pruner: none")


def _dimension(
    ctx: Ctx, spec: Any, path: KeyPath, method: str, definition: Benchmark | None, name: str
) -> Dimension:
    if isinstance(spec, list):
        if not spec:
            raise ctx.fail(path, "empty list of values")
        values = tuple(
            _check_param(ctx, definition, name, v, (*path, i)) for i, v in enumerate(spec)
        )
        return Choice(values)
    if isinstance(spec, Mapping):
        if method == "grid":
            raise ctx.fail(path, "grid search needs a list of values; distributions are "
                                 "for methods random and optuna")
        kinds = [k for k in spec if k in DISTRIBUTIONS]
        extra = [k for k in spec if k not in (*DISTRIBUTIONS, "log", "step")]
        if len(kinds) != 1 or extra:
            raise ctx.fail(path, f"a distribution is one of {', '.join(DISTRIBUTIONS)} "
                                 "(plus optional log, step)")
        kind = kinds[0]
        log = ctx.boolean(spec.get("log", False), (*path, "log"))
        if kind == "choice":
            return _dimension(ctx, spec[kind], (*path, kind), "grid", definition, name)
        bounds = spec[kind]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ctx.fail((*path, kind), "expected [low, high]")
        low: float
        high: float
        if kind == "int":
            ilow = ctx.integer(bounds[0], (*path, kind, 0), -(2**62))
            ihigh = ctx.integer(bounds[1], (*path, kind, 1), -(2**62))
            step = ctx.integer(spec.get("step", 1), (*path, "step"), 1)
            dim: Dimension = IntRange(ilow, ihigh, log, step)
            low, high = ilow, ihigh
        else:
            low = ctx.number(bounds[0], (*path, kind, 0))
            high = ctx.number(bounds[1], (*path, kind, 1))
            if "step" in spec:
                raise ctx.fail((*path, "step"), "step is only for int distributions")
            dim = Uniform(low, high, log or kind == "loguniform")
        if low > high:
            raise ctx.fail((*path, kind), f"low {low} is greater than high {high}")
        if (log or kind == "loguniform") and low <= 0:
            raise ctx.fail((*path, kind), "log scale needs low > 0")
        if definition is not None:
            p = definition.param(name)
            if p is not None and p.type not in ("int", "float"):
                raise ctx.fail(path, f"parameter {name} is {p.type}; use a list of values")
        return dim
    raise ctx.fail(path, f"expected a list of values or a distribution, got {kind_of(spec)}")


def _cv(ctx: Ctx, raw: Any, tree: bool = False) -> CVSpec | None:
    if raw is None:
        return None
    c = ctx.mapping(raw, ("cv",), CV_KEYS)
    train = _studies(ctx, c, "train_studies")
    test = _studies(ctx, c, "test_studies")
    if bool(train) != bool(test):
        given, missing = ("train_studies", "test_studies") if train else ("test_studies",
                                                                         "train_studies")
        raise ctx.fail(("cv", given), f"cross-study validation needs {missing} as well")
    if both := sorted(set(train) & set(test)):
        raise ctx.fail(("cv", "test_studies"), f"{', '.join(both)} is in train_studies too: "
                                               "a test study must be one never trained on")
    # Cross-study alone needs no folds (each point is one job: train on the train studies,
    # test on each test study), nor does a leave-out tree; plain CV has 5 unless told.
    folds: int | None = None if (train or tree) and "folds" not in c else ctx.integer(
        c.get("folds", 5), ("cv", "folds"), 2)
    seed = ctx.integer(c.get("seed", 0), ("cv", "seed"), 0, MAX_SEED)
    stratify = ctx.boolean(c.get("stratify", True), ("cv", "stratify"))
    groups = None if c.get("groups") is None else ctx.string(c["groups"], ("cv", "groups"),
                                                             GROUP_KINDS)
    holdout = 0.0
    if c.get("holdout") is not None:
        holdout = ctx.number(c["holdout"], ("cv", "holdout"))
        if not 0 < holdout <= MAX_HOLDOUT:
            raise ctx.fail(("cv", "holdout"), f"a fraction of the groups in (0, {MAX_HOLDOUT}], "
                                              f"got {holdout:g}")
    repeats = ctx.integer(c.get("repeats", 1), ("cv", "repeats"), 1)
    if repeats > 1 and folds is None:
        raise ctx.fail(("cv", "repeats"), "repeats draws the folds again: it needs cv.folds")
    return CVSpec(folds, seed, stratify, groups, holdout, repeats, train, test)


def _studies(ctx: Ctx, c: dict[str, Any], key: str) -> tuple[str, ...]:
    raw = c.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ctx.fail(("cv", key), f"expected a list of study names, got {kind_of(raw)}")
    names = tuple(ctx.string(v, ("cv", key, i)) for i, v in enumerate(raw))
    for i, name in enumerate(names):
        if not name.strip() or name in names[:i]:
            raise ctx.fail(("cv", key, i), f"study names must be non-empty and distinct, "
                                           f"got {name!r}")
    return names


def _stages(ctx: Ctx, raw: Any, cv: CVSpec | None, search: SearchSpec) -> StagesSpec | None:
    """The leave-out tree: each node one job, its children starting from its weights."""
    if raw is None:
        return None
    s = ctx.mapping(raw, ("stages",), STAGES_KEYS)
    if cv is not None and cv.folds is not None:
        raise ctx.fail(("stages",), "stages and cv.folds both split the data into parts; use "
                                    "one (cv may still set holdout, groups' kind or studies)")
    if search.adaptive:
        raise ctx.fail(("stages",), f"a leave-out tree is planned up front; search method "
                                    f"{search.method} makes its jobs as results come")
    depth = ctx.integer(s.get("depth", 1), ("stages", "depth"), 1, MAX_DEPTH)
    children = ctx.integer(s.get("children", 2), ("stages", "children"), 2)
    split = ctx.string(s.get("split", "cell"), ("stages", "split"), GROUP_KINDS)
    epochs = ctx.string(s.get("epochs", "flat"), ("stages", "epochs"), EPOCH_SCHEDULES)
    baseline = ctx.boolean(s.get("baseline", False), ("stages", "baseline"))
    spec = StagesSpec(depth, children, split, epochs, baseline)
    if spec.nodes() > MAX_JOBS:
        raise ctx.fail(("stages", "depth"), f"{children}^1 + ... + {children}^{depth} = "
                                            f"{spec.nodes():,} nodes, more than one sweep plans")
    return spec


def _check_designs(ctx: Ctx, definition: Benchmark | None, benchmark: str, cv: CVSpec | None,
                   stages: StagesSpec | None) -> None:
    """A built-in (or a user's Benchmark) declares the designs its data honours; a user's
    training function gets the design in its params and is trusted with it."""
    if definition is None:
        return
    asked: list[tuple[str, tuple[str, ...], str | None]] = []
    if cv is not None:
        if cv.groups:
            asked.append(("groups", ("cv", "groups"), cv.groups))
        if cv.holdout:
            asked.append(("holdout", ("cv", "holdout"), None))
        if cv.train_studies:
            asked.append(("studies", ("cv", "train_studies"), None))
    if stages is not None:
        asked.append(("stages", ("stages",), stages.split))
    for design, path, kind in asked:
        if design not in definition.designs:
            able = _designs_of(design)
            raise ctx.fail(path, f"{benchmark} does not support {'/'.join(path)}"
                                 + (f" ({', '.join(able)} does)" if able else ""))
        if kind is not None and kind not in definition.groups:
            raise ctx.fail(path if design == "groups" else (*path, "split"),
                           f"{benchmark} cannot group samples by {kind}; it groups by "
                           f"{', '.join(definition.groups) or 'nothing'}")


def _check_synthetic_studies(ctx: Ctx, definition: Benchmark | None, params: dict[str, Any],
                             cv: CVSpec | None, stages: StagesSpec | None) -> None:
    """Synthetic data has the studies its ``studies`` param names (P1B3): a study design
    that names another, or groups by study without any, would fail every job alike."""
    if definition is None or definition.param("studies") is None:
        return
    defaults = definition.defaults()
    if params.get(DATA_PARAM, defaults.get(DATA_PARAM)) != "synthetic":
        return  # a data directory's SOURCE column is read by the jobs
    studies = params.get("studies", defaults.get("studies")) or []
    if cv is not None:
        for key in ("train_studies", "test_studies"):
            for i, name in enumerate(getattr(cv, key)):
                if name not in studies:
                    named = ", ".join(studies) or "none: set params.studies"
                    raise ctx.fail(("cv", key, i), f"{name!r} is not one of the synthetic "
                                                   f"data's studies ({named})")
    kinds = [(("cv", "groups"), cv.groups if cv else None),
             (("stages", "split"), stages.split if stages else None)]
    for path, kind in kinds:
        if kind == "study" and len(studies) < 2:
            raise ctx.fail(path, "grouping by study needs the synthetic data's studies "
                                 "(params.studies, at least 2)")


def _designs_of(design: str) -> list[str]:
    """The built-ins that support ``design`` (for the message refusing another)."""
    able = []
    for name in sorted(BUILTIN):
        found = find_benchmark(name, Path("."))
        if found is not None and design in found.designs:
            able.append(name)
    return able


def _uq(ctx: Ctx, raw: Any, benchmark: str, params: dict[str, Any],
        search: SearchSpec) -> UQSpec | None:
    if raw is None:
        return None
    u = ctx.mapping(raw, ("uq",), UQ_KEYS)
    method = ctx.string(u.get("method", "ensemble"), ("uq", "method"), UQ_METHODS)
    replicas = ctx.integer(u.get("replicas", 1), ("uq", "replicas"), 1)
    only = {"samples": "mc_dropout", "noise_levels": "noise", "noise": "noise"}
    for key, owner in only.items():
        if key in u and method != owner:
            raise ctx.fail(("uq", key), f"only for uq.method {owner} (this is {method})")
    samples = 0
    if method == "mc_dropout":
        samples = ctx.integer(u.get("samples", DEFAULT_MC_SAMPLES), ("uq", "samples"), 2,
                              10_000)
        if benchmark in BUILTIN and params.get("dropout", 1.0) == 0:
            raise ctx.fail(("params", "dropout"), "uq.method mc_dropout needs dropout > 0")
    levels: tuple[float, ...] = ()
    noise = "features"
    if method == "noise":
        noise = ctx.string(u.get("noise", "features"), ("uq", "noise"), NOISE_KINDS)
        raw_levels = u.get("noise_levels")
        if not isinstance(raw_levels, list) or not raw_levels:
            raise ctx.fail(("uq", "noise_levels"), "uq.method noise needs a non-empty list "
                                                   "of noise levels, e.g. [0.0, 0.1, 0.3]")
        levels = tuple(ctx.number(v, ("uq", "noise_levels", i)) for i, v in enumerate(raw_levels))
        flips = noise == "labels" and benchmark in ("nt3", "tc1")  # classifiers flip labels
        for i, level in enumerate(levels):
            if level < 0 or (flips and level > 1):
                allowed = "0..1 (a label flip probability)" if flips else ">= 0"
                raise ctx.fail(("uq", "noise_levels", i), f"{level} is outside {allowed}")
        if len(set(levels)) != len(levels):
            raise ctx.fail(("uq", "noise_levels"), "levels repeat")
        if search.method == "optuna":
            raise ctx.fail(("uq", "method"), "a noise sweep crosses every point with its "
                                             "levels; use a grid, random or list search")
        if NOISE_PARAM in params or NOISE_PARAM in search.space:
            raise ctx.fail(("uq", "method"), f"the noise level is the parameter "
                                             f"{NOISE_PARAM}; do not set it yourself")
    loss = None
    if "loss" in u:
        loss = ctx.string(u["loss"], ("uq", "loss"), UQ_LOSSES)
        if benchmark != "p1b3":
            raise ctx.fail(("uq", "loss"), "a predicted spread is for the regression "
                                           f"benchmark p1b3 (this sweep runs {benchmark})")
    return UQSpec(replicas, method, samples, levels, noise, loss)


def _resources(ctx: Ctx, raw: Any) -> Resources:
    r = ctx.mapping(raw if raw is not None else {}, ("resources",), RESOURCE_KEYS)
    scheduler = ctx.string(r.get("scheduler", "local"), ("resources", "scheduler"), SCHEDULERS)
    mode = ctx.string(r.get("mode", "pack"), ("resources", "mode"), MODES)
    workers = ctx.string(r.get("workers", DEFAULT_WORKERS), ("resources", "workers"),
                         WORKER_MODES)
    throttle = ctx.integer(r.get("array_throttle", 0), ("resources", "array_throttle"), 0)
    site: SiteConfig | None = None
    site_cores = site_gpus = 0
    if scheduler != "local":
        from candle.spec.site import load_site, resolve_site

        name = ctx.string(r.get("site", DEFAULT_SITES[scheduler]), ("resources", "site"))
        try:
            site = load_site(resolve_site(name, ctx.file.resolve().parent))
        except UserError as exc:
            if exc.file is not None:  # the site file itself is wrong: its own location
                raise
            raise ctx.fail(("resources", "site"), exc.message) from None
        if site.scheduler != scheduler:
            raise ctx.fail(("resources", "site"), f"site {name!r} is a {site.scheduler} site; "
                                                  f"this sweep's scheduler is {scheduler}")
        site_cores, site_gpus = site.cores_per_node, site.gpus_per_node
    elif "site" in r or "mode" in r:
        key = "site" if "site" in r else "mode"
        raise ctx.fail(("resources", key), "only for a cluster scheduler (slurm, pbs)")
    ranks = ctx.integer(r.get("ranks_per_job", 1), ("resources", "ranks_per_job"), 1)
    concurrent = ctx.integer(r.get("max_concurrent", 0), ("resources", "max_concurrent"), 0)
    nodes = ctx.integer(r.get("nodes", 1), ("resources", "nodes"), 1, MAX_NODES)
    if scheduler == "local" and nodes != 1:
        raise ctx.fail(("resources", "nodes"), "a local run uses this one machine; nodes must "
                                               "be 1")
    slots = ctx.integer(r.get("slots_per_node", site_cores), ("resources", "slots_per_node"), 0)
    gpus = ctx.integer(r.get("gpus_per_node", site_gpus), ("resources", "gpus_per_node"), 0,
                       MAX_GPUS_PER_NODE)
    oversubscribe = ctx.boolean(r.get("oversubscribe", False), ("resources", "oversubscribe"))
    if oversubscribe and scheduler != "local":
        # Inside an allocation the slots are what the scheduler gave, and srun (--exact) and
        # mpiexec start no more ranks than that: the jobs could never start.
        raise ctx.fail(("resources", "oversubscribe"),
                       f"only for scheduler local: in a {scheduler} allocation each rank needs "
                       "a slot the scheduler gave; lower ranks_per_job, or add nodes or "
                       "slots_per_node")
    per_node = min(slots, gpus) if slots and gpus else (gpus or slots)
    if per_node and ranks > per_node * nodes and not oversubscribe:
        what = "GPUs" if gpus and (not slots or gpus < slots) else "slots"
        remedy = ("lower ranks_per_job, add nodes, or set oversubscribe: true"
                  if scheduler == "local" else "lower ranks_per_job or add nodes")
        raise ctx.fail(("resources", "ranks_per_job"),
                       f"{ranks} ranks do not fit in {nodes} node(s) x {per_node} {what}; "
                       f"{remedy}")
    walltime = r.get("walltime", "01:00:00")
    if not isinstance(walltime, str) or not WALLTIME_RE.match(walltime):
        raise ctx.fail(("resources", "walltime"), f"expected [D-]HH:MM:SS, got {walltime!r}")
    lead = ctx.integer(r.get("signal_lead", min(DEFAULT_SIGNAL_LEAD,
                                                walltime_seconds(walltime) // 4)),
                       ("resources", "signal_lead"), 0)
    if lead and lead >= walltime_seconds(walltime):
        raise ctx.fail(("resources", "signal_lead"),
                       f"{lead} s is not shorter than the walltime {walltime}")
    return Resources(scheduler, ranks, concurrent, walltime, nodes, slots, gpus, oversubscribe,
                     mode, throttle, site, signal_lead=lead, walltime_given="walltime" in r,
                     workers=workers)
