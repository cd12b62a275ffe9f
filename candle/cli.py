"""The `candle` command. Thin: parse, call a layer, print."""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from candle.errors import UserError
from candle.predict import CHUNK_ROWS
from candle.schedulers._command import SchedulerError
from candle.spec.model import Resources, Sweep
from candle.supervisor.loop import EXIT_RESUMABLE

EXIT_ENVIRONMENT = 1  # the machine refused (disk full, read-only): the user's input was fine


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SchedulerError as exc:  # scancel/qdel/... refused: the command, its code, stderr
        click.echo(f"candle: {exc}", err=True)
        sys.exit(EXIT_ENVIRONMENT)
    except OSError as exc:  # disk full, read-only or vanished filesystem: not a bug of ours
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"candle: {where}{exc.strerror or exc}; files already written are "
                   "unchanged (every write is a temp file renamed into place)", err=True)
        sys.exit(EXIT_ENVIRONMENT)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="candle")
def cli() -> None:
    """Run deep-learning hyperparameter sweeps (CANDLE benchmarks) on HPC schedulers."""


@cli.command()
@click.argument("sweep", type=click.Path(path_type=Path))
def validate(sweep: Path) -> None:
    """Check SWEEP without running anything."""
    from candle.plan import count_points
    from candle.spec import load_sweep

    spec = load_sweep(sweep)
    unit = {"optuna": "trials", "pbt": "members"}.get(spec.search.method, "points")
    click.echo(f"{sweep}: ok ({spec.benchmark}, {spec.search.method}, "
               f"{count_points(spec)} {unit})")


@cli.command()
@click.argument("sweep", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--show", default=10, show_default=True, help="jobs to list")
def plan(sweep: Path, fmt: str, show: int) -> None:
    """Dry run: how many points, folds, replicas and jobs SWEEP makes. Writes nothing."""
    from candle.adaptive.pbt import segments_per_member
    from candle.plan import Job, count_points, iter_jobs
    from candle.reporting.render import print_plan
    from candle.spec import load_sweep
    from candle.supervisor.run import planned_total

    spec = load_sweep(sweep)
    jobs: list[Job] = []
    total = 0
    for job in iter_jobs(spec):
        total += 1
        if len(jobs) < show:
            jobs.append(job)
    folds = (spec.cv.folds or 1) * spec.cv.repeats if spec.cv else 1
    replicas = spec.uq.replicas if spec.uq else 1
    adaptive = spec.search.adaptive
    info = {
        "name": spec.name, "benchmark": spec.benchmark, "method": spec.search.method,
        "points": count_points(spec), "folds": folds, "replicas": replicas,
        # An adaptive search makes its jobs as it goes: at most this many (pruning: fewer).
        "jobs": (planned_total(spec, total) if spec.search.pbt is not None
                 else spec.search.trials * folds * replicas if adaptive else total),
        "adaptive": adaptive,
        "segments": (segments_per_member(spec.search.pbt.epochs, spec.search.pbt.ready)
                     if spec.search.pbt is not None else None),
        "run_dir": str(spec.run_dir),
        "allocation": allocation_info(spec.resources),
        "repeats": spec.cv.repeats if spec.cv else 1,
        "tree": ({"depth": spec.stages.depth, "children": spec.stages.children,
                  "nodes": spec.stages.nodes(), "jobs_per_replica":
                  spec.stages.jobs_per_replica(), "baseline": spec.stages.baseline}
                 if spec.stages else None),
    }
    if fmt == "json":
        click.echo(json.dumps({**info, "first_jobs": [j.to_record() for j in jobs]}, indent=2))
    else:
        print_plan(info, jobs)


@cli.command()
@click.argument("sweep", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="print the batch scripts; submit nothing")
@click.option("--wait", is_flag=True, help="cluster schedulers: follow until all jobs end")
@click.option("--fail-fast", is_flag=True,
              help="stop the sweep when a job fails after its retries (running jobs "
                   "checkpoint and stop)")
def run(sweep: Path, dry_run: bool, wait: bool, fail_fast: bool) -> None:
    """Run SWEEP; running it again resumes (finished jobs are not re-run).

    With a cluster scheduler this submits and returns (or follows, with --wait).
    Exit codes: 0 all done, 1 jobs failed (or timed out), 2 a mistake in the input, 75
    stopped early at a checkpoint (walltime, SIGUSR1): the same command continues."""
    from candle.spec import load_sweep

    spec = load_sweep(sweep)
    if spec.resources.scheduler != "local":
        from candle.schedulers.batch.follow import run_on_cluster

        sys.exit(run_on_cluster(spec, dry_run=dry_run, wait=wait, fail_fast=fail_fast))
    if dry_run or wait:
        from candle.spec.yaml_lines import key_line

        what = ("--dry-run prints batch scripts; this sweep runs locally (see `candle plan` "
                "for its jobs)" if dry_run else
                "--wait follows batch jobs; this sweep runs locally, and `candle run` already "
                "waits for its jobs (drop --wait)")
        raise UserError(what, file=sweep, line=key_line(sweep, ("resources", "scheduler")),
                        key="resources.scheduler")
    sys.exit(_run_locally(spec, fail_fast))


def _run_locally(spec: Sweep, fail_fast: bool) -> int:
    """Run a local sweep with a progress bar; the exit code `candle run` documents."""
    from candle.reporting.render import RunProgress
    from candle.supervisor import RunStopped, run_sweep

    started = time.time()
    adaptive = spec.search.method == "optuna"
    progress = RunProgress(spec.name, unit="trials" if adaptive else "jobs")  # pbt: segments
    try:
        with progress:
            outcome = run_sweep(spec, on_event=progress.event, on_planned=progress.planned,
                                on_trial=progress.trial if adaptive else None,
                                on_notice=progress.notice, fail_fast=fail_fast)
    except RunStopped:
        click.echo(f"interrupted; run the same command again to resume ({spec.run_dir})",
                   err=True)
        sys.exit(130)
    elapsed = time.time() - started
    pruned = f"{outcome.pruned} pruned, " if adaptive else ""
    timed_out = f"{outcome.timed_out} timed out, " if outcome.timed_out else ""
    click.echo(f"{spec.name}: {outcome.done} done, {pruned}{outcome.failed} failed, "
               f"{timed_out}{outcome.skipped} already done ({elapsed:.0f} s) -> "
               f"{spec.run_dir}")
    if outcome.failed:
        click.echo(f"{outcome.failed} job(s) failed after retries; see: candle status "
                   f"{spec.run_dir}", err=True)
    if outcome.timed_out:
        click.echo(f"{outcome.timed_out} job(s) timed out (training.job_timeout) on every "
                   f"try; see: candle status {spec.run_dir}", err=True)
    if outcome.left:
        why = {"fail-fast": "--fail-fast", "signal": "SIGUSR1"}.get(outcome.stopped_by,
                                                                    "the walltime")
        click.echo(f"stopped early ({why}): {outcome.interrupted} job(s) interrupted at a "
                   "checkpoint; run the same command again to continue", err=True)
    if outcome.failed or outcome.timed_out:
        return 1
    if outcome.left:
        return EXIT_RESUMABLE
    return 0


def allocation_info(resources: Resources) -> dict[str, Any]:
    """How the jobs will sit in the allocation: ranks each, slots, jobs at once."""
    from candle.supervisor.run import concurrent_jobs, planned_pool

    pool = planned_pool(resources)
    info: dict[str, Any] = {
        "ranks_per_job": resources.ranks_per_job, "nodes": len(pool.nodes),
        "slots_per_node": pool.nodes[0].slots, "gpus_per_node": resources.gpus_per_node,
        "jobs_at_once": concurrent_jobs(resources, pool),
        "launcher": ("srun" if resources.scheduler == "slurm" else
                     "mpiexec" if resources.scheduler == "pbs" else
                     "mpirun" if resources.ranks_per_job > 1 else "process")}
    if resources.ranks_per_job == 1 and resources.workers == "warm" and (
            resources.scheduler == "local" or resources.mode == "pack"):
        info["launcher"] = ("forked by a warm worker" if resources.scheduler == "local" else
                            f"forked by a warm worker per node, one {info['launcher']} each")
    if resources.site is None:
        return info
    info["site"] = str(resources.site.source)
    info["mode"] = resources.mode
    if resources.mode == "array":  # every job its own submission: the throttle bounds them
        info["jobs_at_once"] = resources.array_throttle  # 0: as many as the queue starts
    elif not resources.slots_per_node:
        info["note"] = (f"the site names no cores_per_node, so each node is asked for one "
                        f"job's {resources.ranks_per_job} rank(s) and runs one job at a time; "
                        "set cores_per_node in a site config beside the sweep (or "
                        "resources.slots_per_node) to pack more")
    return info


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--watch", is_flag=True,
              help="refresh a live table until no job is pending or running (Ctrl-C stops "
                   "watching, exit 0). When stdout is not a terminal: one line each time "
                   "the counts change, then the final table")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              metavar="SECONDS", help="with --watch: seconds between refreshes")
def status(run_dir: Path, fmt: str, watch: bool, interval: float) -> None:
    """Counts of jobs by state in RUN_DIR, and the failed ones with their log tails."""
    from candle.reporting import collect_status
    from candle.reporting.render import print_status
    from candle.store import RunStore

    store = RunStore(run_dir)
    if watch:
        _watch_status(store.require(), fmt, interval)
        return
    result = collect_status(store)
    if store.exists() and store.manifest().resources.scheduler != "local":
        from candle.schedulers.batch.submit import batch_report

        result.batch, result.notes = batch_report(store)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_status(result)


def _watch_status(store: Any, fmt: str, interval: float) -> None:
    from candle.reporting.watch import watch, watch_console

    if fmt != "table":
        raise UserError("--watch draws a table; use --format json without --watch")
    batch = None
    if store.manifest().resources.scheduler != "local":
        from candle.schedulers.batch.submit import batch_report

        batch = batch_report
    try:
        watch(store, interval, watch_console(), batch)
    except KeyboardInterrupt:
        click.echo("stopped watching", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def cancel(run_dir: Path) -> None:
    """Cancel RUN_DIR's batch jobs (scancel, qdel); finished results stay."""
    from candle.schedulers.batch.submit import cancel_run
    from candle.store import RunStore

    store = RunStore(run_dir).require()
    if store.manifest().resources.scheduler == "local":
        raise UserError("a local run has no batch jobs to cancel; stop it with Ctrl-C, or "
                        "SIGTERM to its `candle run` process (the same command resumes it)",
                        file=run_dir)
    ids = cancel_run(store)
    click.echo(f"cancelled {len(ids)} batch job(s): {' '.join(ids) or '-'}")


@cli.command(hidden=True)
@click.argument("run_dir", type=click.Path(path_type=Path))
def supervise(run_dir: Path) -> None:
    """Inside a pack allocation: keep its slots full until every job is done."""
    from candle.schedulers.batch.inside import supervise as supervise_allocation
    from candle.supervisor import RunStopped

    try:
        outcome = supervise_allocation(run_dir)
    except RunStopped:  # SIGTERM: scancel/qdel, a preemption, PBS's walltime kill
        click.echo("stopped by SIGTERM; running jobs were stopped, results kept", err=True)
        sys.exit(143)
    click.echo(f"{outcome.done} done, {outcome.failed} failed, {outcome.timed_out} timed "
               f"out, {outcome.interrupted} interrupted, {outcome.skipped} already done")
    sys.exit(1 if outcome.failed or outcome.timed_out else 0)


@cli.command("array-task", hidden=True)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("chunk")
def array_task(run_dir: Path, chunk: str) -> None:
    """Inside an array task: run this task's job."""
    from candle.schedulers.batch.inside import array_task as run_task
    from candle.supervisor import RunStopped

    try:
        sys.exit(run_task(run_dir, chunk))
    except RunStopped:  # SIGTERM: scancel/qdel, the walltime's kill, a preemption
        click.echo("stopped by SIGTERM; the job resumes from its last checkpoint", err=True)
        sys.exit(143)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--top", type=int, default=None, help="only the N best points")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="also draw the results into this image file (PNG, SVG, PDF)")
def summary(run_dir: Path, fmt: str, top: int | None, plot: Path | None) -> None:
    """One row per search point (metric mean ± std over folds and replicas), best first;
    for an Optuna search one row per trial, its best trial(s) and parameter importances;
    for population-based training one row per member and the best member's schedule."""
    from candle.store import RunStore

    store = RunStore(run_dir).require()
    if store.manifest().optuna:
        _study_summary(store, fmt, top, plot)
        return
    if store.manifest().pbt is not None:
        _pbt_summary(store, fmt, top, plot)
        return
    from candle.reporting.render import SUMMARY_ROWS, print_summary, summary_csv
    from candle.reporting.summary_cache import summarise_cached

    result = summarise_cached(store)
    if top is not None:
        result.rows = result.rows[:top]
    if plot is not None:
        from candle.reporting.summary import plot_summary

        plot_summary(result, plot)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict(result.metric) for r in result.rows], indent=2))
    elif fmt == "csv":
        click.echo(summary_csv(result), nl=False)
    else:
        print_summary(result, limit=None if top is not None else SUMMARY_ROWS)
    if plot is not None and fmt == "table":
        click.echo(f"plot: {plot}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def best(run_dir: Path, fmt: str) -> None:
    """The best point of RUN_DIR by the sweep's metric and direction (mean over folds and
    replicas), with its params and every metric it reported."""
    from candle.final.best import best_point
    from candle.store import RunStore

    found = best_point(RunStore(run_dir))
    if fmt == "json":
        click.echo(json.dumps(found.to_dict(), indent=2))
        return
    click.echo(f"best point {found.point} of {run_dir} ({found.metric}, {found.direction}): "
               f"{found.mean:.6g} ± {found.std:.2g} over {found.n} job(s)")
    if found.note:
        click.echo(f"note: {found.note}")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(found.params.items()))
    click.echo(f"params: {shown or '(the sweep fixed every parameter)'}")
    width = max((len(name) for name in found.metrics), default=0)
    for name, numbers in found.metrics.items():
        click.echo(f"  {name:<{width}}  {numbers['mean']:.6g} ± {numbers['std']:.2g}")
    click.echo(f"final model: candle train --from {run_dir} --best --replicas 3 "
               "--out MODEL_DIR")


def _pbt_summary(store: Any, fmt: str, top: int | None, plot: Path | None) -> None:
    """Population-based training: one row per member and the best one's schedule."""
    from candle.reporting.pbt import read_segment_results, summarise_pbt
    from candle.reporting.render import pbt_csv, print_pbt_summary

    result = summarise_pbt(store)
    if plot is not None:
        from candle.reporting.plots import pbt_population

        pbt_population(result, read_segment_results(store, result)).savefig(plot, dpi=110)
    if _show_rows(result, fmt, top, pbt_csv):
        print_pbt_summary(result)
        if plot is not None:
            click.echo(f"plot: {plot}")


def _show_rows(result: Any, fmt: str, top: int | None, to_csv: Any) -> bool:
    """Keep the ``top`` rows; print JSON or CSV. True when the table is the caller's."""
    if top is not None:
        result.rows = result.rows[:top]
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt == "csv":
        click.echo(to_csv(result), nl=False)
    return fmt == "table"


def _study_summary(store: Any, fmt: str, top: int | None, plot: Path | None) -> None:
    from candle.reporting.render import print_study_summary, study_csv
    from candle.reporting.study_summary import plot_study, summarise_study

    result = summarise_study(store, importances=fmt != "csv")
    if plot is not None:
        plot_study(result, plot)
    if _show_rows(result, fmt, top, study_csv):
        print_study_summary(result)
        manifest = store.manifest()
        if manifest.uq:
            from candle.reporting.render import print_study_uq
            from candle.uq import summarise_uq

            print_study_uq(manifest.uq_method, summarise_uq(store))
        if plot is not None:
            click.echo(f"plot: {plot}")


@cli.command(context_settings={"ignore_unknown_options": False}, add_help_option=False)
@click.argument("benchmark", required=False)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="override a parameter (repeatable); highest precedence")
@click.option("--config", "config", type=click.Path(path_type=Path),
              help="YAML or upstream *_default_model.txt parameter file")
@click.option("--summary", "show_summary", is_flag=True,
              help="print the Keras model summary and parameter count; do not train")
@click.option("--out", type=click.Path(path_type=Path), help="job directory (checkpoints, "
              "result.json); default: a new temporary directory. With --from: the model "
              "directory (required)")
@click.option("--from", "from_run", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="train a point of this run on all the data as a final model")
@click.option("--best", "use_best", is_flag=True, help="with --from: its best point")
@click.option("--point", type=click.IntRange(min=0), default=None,
              help="with --from: this point (see `candle summary`)")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="with --from: an ensemble of this many seeds")
@click.option("-h", "--help", "show_help", is_flag=True, help="show this help (with a "
              "BENCHMARK: its parameters)")
@click.pass_context
def train(ctx: click.Context, benchmark: str | None, sets: tuple[str, ...],
          config: Path | None, show_summary: bool, out: Path | None,
          from_run: Path | None, use_best: bool, point: int | None, replicas: int,
          show_help: bool) -> None:
    """Train one BENCHMARK job in the foreground (like upstream *_baseline_keras2.py), or
    with --from RUN_DIR (--best | --point N) a final model of that run's point on all the
    data: one job or an ensemble of --replicas seeds, written to --out with model.json."""
    from candle.benchmark import builtin_names, get_benchmark
    from candle.params import parse_set, read_config_file, resolve
    from candle.reporting.render import print_benchmark_params

    if from_run is not None or use_best or point is not None:
        others = [name for name, given in (("BENCHMARK", benchmark), ("--set", sets),
                                           ("--config", config),
                                           ("--summary", show_summary)) if given]
        if others:
            raise UserError(f"--from trains the run's own point; drop {', '.join(others)}")
        if from_run is None:
            raise UserError("--best and --point choose a point of a run: add --from RUN_DIR")
        if use_best == (point is not None):
            raise UserError("--from needs exactly one of --best or --point N")
        if out is None:
            raise UserError("--from needs --out MODEL_DIR (where the final model goes)")
        _train_final(from_run, point, replicas, out)
        return
    if benchmark is None:
        click.echo(ctx.get_help())
        click.echo(f"\nBenchmarks: {', '.join(builtin_names())}")
        return
    if benchmark not in builtin_names():
        raise UserError(f"unknown benchmark {benchmark!r}; use one of "
                        f"{', '.join(builtin_names())}")
    definition = get_benchmark(benchmark)
    if show_help:
        click.echo(ctx.get_help())
        print_benchmark_params(definition)
        return
    layers: list[tuple[str, dict[str, Any]]] = []
    if config is not None:
        layers.append((str(config), read_config_file(config)))
    layers.append(("--set", dict(parse_set(s) for s in sets)))
    params = resolve(definition, layers)
    if show_summary:
        from candle.job.show_model import print_model_summary

        print_model_summary(benchmark, params)
        return
    _train_foreground(benchmark, params, out)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="directory for the PNG plots and index.html (created if missing)")
def report(run_dir: Path, out: Path) -> None:
    """Plots of RUN_DIR (learning curves, metric vs each varied parameter, parallel
    coordinates, UQ calibration and spread, CV folds; for population-based training the
    population over epochs and the best member's schedule) as PNG files and one
    self-contained HTML page, --out/index.html (no network needed to view it)."""
    from candle.reporting.page import terminal_progress, write_report
    from candle.store import RunStore

    store = RunStore(run_dir).require()
    with terminal_progress() as progress:
        written = write_report(store, out, progress)
    skipped = f"; {len(written.skipped)} skipped (listed on the page)" if written.skipped else ""
    click.echo(f"report: {written.index} ({len(written.images)} image(s){skipped})")


@cli.group()
def data() -> None:
    """Benchmark data: write synthetic files in the upstream formats."""


@data.command("synth")
@click.argument("benchmark")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="directory")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="sizes and seed, e.g. --set features=2000 --set samples=300")
def data_synth(benchmark: str, out: Path, sets: tuple[str, ...]) -> None:
    """Write BENCHMARK's synthetic data set as upstream files into --out."""
    from candle.benchmark import SYNTHETIC_WRITER, builtin_names, get_benchmark
    from candle.params import parse_set, resolve

    if benchmark not in builtin_names():
        raise UserError(f"unknown benchmark {benchmark!r}; use one of "
                        f"{', '.join(builtin_names())}")
    params = resolve(get_benchmark(benchmark), [("--set", dict(parse_set(s) for s in sets))])
    try:
        written = importlib.import_module(SYNTHETIC_WRITER).write_synthetic(benchmark, out,
                                                                            params)
    except OSError as exc:
        raise UserError(f"cannot write: {exc.strerror or exc}", file=out) from None
    for path in written:
        click.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    click.echo(f"use it with: params: {{data: {out.resolve()}}}")


def _train_final(run_dir: Path, point: int | None, replicas: int, out: Path) -> None:
    from candle.final.train_from import plan_final, write_card

    plan = plan_final(run_dir, point, replicas, out)
    spec = plan.sweep
    click.echo(f"final model of {run_dir} point {plan.best.point} ({plan.best.metric} "
               f"{plan.best.mean:.6g}): {replicas} member(s) -> {spec.run_dir}")
    if spec.resources.scheduler != "local":
        from candle.schedulers.batch.follow import run_on_cluster

        code = run_on_cluster(spec, dry_run=False, wait=True)
    else:
        code = _run_locally(spec, fail_fast=False)
    if code != 0:
        sys.exit(code)
    card = write_card(plan, run_dir)
    shown = ", ".join(f"{name} {numbers['mean']:.4g} ± {numbers['std']:.2g}"
                      for name, numbers in card.metrics.items()
                      if name in (plan.best.metric, "val_loss", "val_accuracy", "val_r2"))
    click.echo(f"model: {spec.run_dir / 'model.json'} ({len(card.members)} member(s); "
               f"{shown})")
    click.echo(f"predict: candle predict {spec.run_dir} --data FILE --out predictions.csv")


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--data", "data_file", type=click.Path(path_type=Path), required=True,
              help="new samples in the benchmark's input format (NT3/TC1: the CSV with or "
              "without the label column; P1B3: dose-response rows)")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="predictions CSV (written atomically)")
@click.option("--point", type=int, default=None,
              help="SOURCE is a run directory: predict with this point's fold/replica models")
@click.option("--mc-passes", type=int, default=None,
              help="MC-dropout passes per member (default: the run's uq.samples for "
              "mc_dropout members, else 0)")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=CHUNK_ROWS, show_default=True,
              help="rows read and predicted at a time (bounds memory)")
def predict(source: Path, data_file: Path, out: Path, point: int | None,
            mc_passes: int | None, chunk_rows: int) -> None:
    """Predict new samples with SOURCE: a model directory (model.json) or, with --point N,
    a run directory's point (its fold/replica models as an ensemble). One row per sample:
    prediction, ensemble spread, entropy or intervals, and the true label's score when the
    file has labels."""
    from candle.predict.engine import predict_file
    from candle.predict.progress import rows_progress
    from candle.predict.source import resolve_source

    resolved = resolve_source(source, point)
    with rows_progress("predict") as progress:
        done = predict_file(resolved, data_file, out, mc_passes=mc_passes,
                            chunk_rows=chunk_rows, progress=progress)
    passes = f", {done.passes} MC-dropout passes each" if done.passes else ""
    click.echo(f"predict: {done.rows} row(s) -> {done.out} ({done.samples_per_second:.1f} "
               f"samples/s; {done.members} member model(s){passes})")


def _train_foreground(benchmark: str, params: dict[str, Any], out: Path | None) -> None:
    from candle.benchmark import TrainContext
    from candle.job.runner import mpi_rank_and_size, train_job
    from candle.store import atomic_write_json

    job_dir = out or Path(tempfile.mkdtemp(prefix=f"candle-{benchmark}-"))
    job_dir.mkdir(parents=True, exist_ok=True)

    def report(epoch: int, logs: dict[str, float]) -> None:
        click.echo(f"epoch {epoch}/{params['epochs']}: " +
                   ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))

    # Under `mpirun -np R candle train …` every rank runs this: Horovod, rank 0 reports.
    rank, size = mpi_rank_and_size()
    ctx = TrainContext(job_dir=job_dir, seed=int(params["rng_seed"]), rank=rank, size=size,
                       on_epoch=report if rank == 0 else None)
    started = time.time()
    outcome = train_job(benchmark, params, ctx, Path.cwd())
    outcome.update(status="done", params=params, duration_s=round(time.time() - started, 3))
    if rank == 0:
        atomic_write_json(job_dir / "result.json", outcome)
        click.echo(f"done in {outcome['duration_s']:.1f} s; result: {job_dir / 'result.json'}")


if __name__ == "__main__":
    main()
