"""`candle run` on a login node with a batch scheduler (Slurm, PBS): write the run
directory, render the batch scripts, submit them (pack: one allocation; array: one
submission per chunk of up to the largest array, never one per job) and record every
submission in the run directory, so `candle status`, `candle cancel` and a later
`candle run` find them again. Scheduler specifics live behind `Provider`."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from candle.plan.jobs import Job, JobTemplate, iter_jobs
from candle.schedulers._base import AllocState
from candle.schedulers.batch.backend import Provider, backend_for
from candle.spec.model import Sweep
from candle.spec.site import SiteConfig
from candle.state import JobState
from candle.store.atomic import atomic_write_json, atomic_write_text, read_json
from candle.store.manifest import RunManifest
from candle.store.run_store import RunStore
from candle.store.tensorboard import record_experiment
from candle.supervisor.run import check_settings

RECORDS = "submissions.json"


@dataclass
class Submission:
    """One submission (sbatch, qsub). Written down *before* it runs, with no job id yet; the
    id is added after. A submitter killed in between leaves a record whose tag (Slurm's
    --comment, PBS's CANDLE_TAG) finds the job in the queue, so nothing is submitted twice."""

    kind: str  # pack | array | adopted (found by its tag, its record lost)
    job_id: str  # "" until the scheduler answered
    script: str
    tag: str
    chunk: str | None = None
    count: int = 0
    submitted: float = 0.0
    after: str = ""  # a continuation: the allocation whose walltime ran out
    # A leave-out tree's stage: ``after`` is the previous stage's arrays (a:b), each of
    # whose tasks must have succeeded (afterok) before this one starts.
    after_ok: bool = False


@dataclass
class Script:
    kind: str
    name: str  # file name in <run>/<scheduler>/
    text: str
    tag: str
    chunk_name: str | None = None
    chunk_ids: tuple[str, ...] = ()


def backend_of(store: RunStore) -> Provider:
    """The provider of the scheduler this run was submitted to."""
    return backend_for(store.manifest().resources.scheduler)


def batch_dir(store: RunStore) -> Path:
    """<run>/<scheduler>/: the scripts, chunk lists and the submission records."""
    return store.root / backend_of(store).NAME


def submissions(store: RunStore) -> list[Submission]:
    path = batch_dir(store) / RECORDS
    if not path.is_file():
        return []
    # Records written before 0.2 name the tag "comment".
    return [Submission(**{("tag" if k == "comment" else k): v for k, v in record.items()})
            for record in read_json(path)]


def _save(store: RunStore, records: list[Submission]) -> None:
    atomic_write_json(batch_dir(store) / RECORDS, [asdict(r) for r in records])


def run_id_of(run_dir: Path) -> str:
    """A short stable id for the run directory, carried in every batch job's tag."""
    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]


def tag_prefix(run_id: str) -> str:
    return f"candle-run:{run_id}:"


def new_tag(run_id: str) -> str:
    """The tag every batch job of a run carries: the run, and this submission's token."""
    return tag_prefix(run_id) + secrets.token_hex(4)


def wave_size(limits: tuple[int, int]) -> int:
    """Array tasks queued at once: half the jobs the cluster lets this user queue."""
    return max(1, limits[1] // 2)


def chunk_records(chunk_name: str) -> str:
    """The file beside chunk-NNNN.txt holding its jobs' records, line for line."""
    return chunk_name.removesuffix(".txt") + ".jsonl"


def chunk_job(folder: Path, chunk_name: str, index: int, wanted: str) -> Job | None:
    """Task ``index``'s job from the chunk's records (None: no such file, from before)."""
    try:
        with (folder / chunk_records(chunk_name)).open("rb") as handle:
            for number, line in enumerate(handle):
                if number == index:
                    job = Job.from_record(json.loads(line))
                    return job if job.id == wanted else None
    except (OSError, ValueError, TypeError):
        return None
    return None


def build_scripts(sweep: Sweep, pending: list[Job], run_dir: Path,
                  limits: tuple[int, int] | None = None, first: int = 0) -> list[Script]:
    """The scripts that would run ``pending`` (pure: no files, no scheduler calls except
    the cluster's limits for array chunking, which tests pass in)."""
    resources = sweep.resources
    backend = backend_for(resources.scheduler)
    site = resources.site or SiteConfig()
    run_id = run_id_of(run_dir)
    if resources.mode == "pack":
        slots = resources.slots_per_node or resources.ranks_per_job  # the site's cores if set
        tag = new_tag(run_id)
        text = backend.render_pack(
            run_id=run_id, tag=tag, run_dir=run_dir, name=sweep.name,
            walltime=resources.walltime, nodes=resources.nodes, tasks_per_node=slots,
            gpus_per_node=resources.gpus_per_node, site=site,
            signal_lead=resources.signal_lead)
        return [Script("pack", f"pack{backend.SUFFIX}", text, tag)]
    max_array, max_jobs = limits or backend.cluster_limits()
    size = max(1, min(max_array - 1, wave_size((max_array, max_jobs))))
    scripts = []
    for k in range(math.ceil(len(pending) / size)):
        chunk = pending[k * size : (k + 1) * size]
        chunk_name = f"chunk-{first + k:04d}.txt"  # numbered on: earlier batches keep theirs
        tag = new_tag(run_id)
        text = backend.render_array(
            run_id=run_id, tag=tag, run_dir=run_dir, name=sweep.name,
            walltime=resources.walltime, ranks=resources.ranks_per_job,
            cores_per_node=resources.slots_per_node, gpus_per_node=resources.gpus_per_node,
            count=len(chunk), throttle=resources.array_throttle, chunk=chunk_name, site=site,
            signal_lead=resources.signal_lead)
        scripts.append(Script("array", f"array-{first + k:04d}{backend.SUFFIX}", text, tag,
                              chunk_name, tuple(j.id for j in chunk)))
    return scripts


def reconcile(store: RunStore) -> list[Submission]:
    return _reconcile(store)[0]


def _reconcile(store: RunStore) -> tuple[list[Submission], set[str]]:
    """Settle the records with the queue: a record without a job id (its submitter died
    during sbatch/qsub) gets the id of the job carrying its tag, or is dropped if there is
    none; a queued job with this run's tag and no record at all is adopted. Also returns
    the ids the queue shows (sacct may not know a job submitted a moment ago)."""
    records = submissions(store)
    tagged = backend_of(store).tagged_jobs()
    if tagged is None:  # the queue cannot be read: change nothing
        return records, set()
    known = {r.tag for r in records}
    settled = []
    changed = False
    for record in records:
        if not record.job_id:
            changed = True
            record.job_id = tagged.get(record.tag, "")
            if not record.job_id:
                continue  # sbatch never got through
        settled.append(record)
    prefix = tag_prefix(run_id_of(store.root))
    for tag, job_id in tagged.items():
        if tag.startswith(prefix) and tag not in known:
            changed = True
            settled.append(Submission("adopted", job_id, "", tag, submitted=time.time()))
    if changed:
        _save(store, settled)
    return settled, set(tagged.values())


def _record_and_submit(store: RunStore, records: list[Submission], record: Submission,
                       path: Path) -> Submission:
    """Write the record, submit, write the id: a crash at any line submits at most once."""
    records.append(record)
    _save(store, records)
    record.job_id = backend_of(store).submit(path, record.tag, after=record.after,
                                             ok=record.after_ok)
    _save(store, records)
    return record


def submit_continuation(store: RunStore, after: str) -> Submission:
    """Inside an allocation whose walltime ran out with work left: submit the same pack
    script again, to start once this allocation has ended. Once per allocation (a requeued
    allocation that ends again finds its continuation already there)."""
    records = submissions(store)
    for record in records:
        if record.after == after and record.job_id:
            return record
    records = [r for r in records if not (r.after == after and not r.job_id)]
    backend = backend_of(store)
    tag = new_tag(run_id_of(store.root))
    script = f"pack{backend.SUFFIX}"
    record = Submission("pack", "", script, tag, None, 0, time.time(), after)
    return _record_and_submit(store, records, record, batch_dir(store) / script)


def active(store: RunStore) -> list[tuple[Submission, AllocState]]:
    """Previous submissions that are still pending or running (one status query)."""
    records, queued = _reconcile(store)
    backend = backend_of(store)
    states = backend.status([r.job_id for r in records])
    out = []
    for record in records:
        mine = backend.entries_of(states, record.job_id)
        live = [s for s in mine.values() if not s.terminal]
        if live:
            out.append((record, live[0]))
        elif record.job_id in queued and not mine:
            out.append((record, AllocState.PENDING))  # too new for sacct: squeue has it
    return out


def plan_and_submit(sweep: Sweep, run_meta: RunManifest, *, dry_run: bool,
                    on_notice: Callable[[str], None] | None = None,
                    ) -> tuple[list[Script], list[Submission], list[Submission]]:
    """Returns (scripts, new submissions, still-active older ones)."""
    store = RunStore(sweep.run_dir)
    adaptive = sweep.search.adaptive
    if dry_run:
        preview = _adaptive_preview(sweep) if adaptive else list(iter_jobs(sweep))
        return build_scripts(sweep, preview, sweep.run_dir), [], []
    # Before the lock: a pack allocation's supervisor holds it for as long as it runs.
    running = active(store) if store.exists() else []
    if running:
        return [], [], [record for record, _ in running]
    with store.supervisor_lock():
        for notice in check_settings(store, sweep):
            (on_notice or (lambda message: None))(notice)
        store.initialise(sweep.text, run_meta, None if adaptive else iter_jobs(sweep))
        record_experiment(store.root, sweep)  # tb/: the HParams experiment config
        from candle.supervisor.seed import apply_seed

        apply_seed(store, sweep, on_notice)  # search.seed_from: before anything is submitted
        if not adaptive:
            states = store.states()  # from the result cache: O(new results) opens a wave
            pending = [job for job in store.jobs() if states[job.id] is not JobState.DONE]
            todo = len(pending)
        elif sweep.resources.mode == "pack":  # the supervisor inside asks the trials
            pending = []
            todo = max(0, sweep.search.budget - adaptive_finished(store))
        else:
            pending = next_batch(store)
            todo = len(pending)
        if not todo:
            return [], [], []
        limits = None
        if sweep.resources.mode == "array":
            limits = backend_for(sweep.resources.scheduler).cluster_limits()
            # An array of N tasks counts as N jobs against MaxJobCount / MaxSubmitJobs: a
            # wave fills half of that; the next wave goes once this one has ended.
            pending = pending[:wave_size(limits)]
            todo = len(pending)
        records = submissions(store)
        arrays = sum(1 for r in records if r.kind == "array")
        # Jobs' params are written at launch. A leave-out tree in array mode: one array (or
        # more, past the largest array) per stage, each waiting for the one before it.
        levels = stage_levels(pending, states) if sweep.resources.mode == "array" and \
            not adaptive else [pending]
        new = []
        folder = batch_dir(store)
        folder.mkdir(exist_ok=True)
        by_id = {job.id: job for job in pending}
        scripts: list[Script] = []
        after = ""
        for level in levels:
            level_scripts = build_scripts(sweep, level, store.root, limits,
                                          first=arrays + len(scripts))
            scripts.extend(level_scripts)
            ids = _submit_scripts(store, records, level_scripts, by_id, folder, todo, after)
            new.extend(ids)
            after = ":".join(record.job_id for record in ids)
        return scripts, new, []


def stage_levels(pending: list[Job], states: dict[str, JobState]) -> list[list[Job]]:
    """``pending`` in waves: first every job that can start now (no parent, or its
    parent done), then the jobs whose parent is in the wave before, and so on (one wave
    when there is no tree). A job whose parent is neither done nor pending waits for the
    next `candle run`."""
    level_of: dict[str, int] = {}
    levels: list[list[Job]] = []
    for job in pending:  # the plan lists a parent before its children
        if job.parent is None or states.get(job.parent) is JobState.DONE:
            level = 0
        elif job.parent in level_of:
            level = level_of[job.parent] + 1
        else:
            continue
        level_of[job.id] = level
        while len(levels) <= level:
            levels.append([])
        levels[level].append(job)
    return levels or [[]]


def _submit_scripts(store: RunStore, records: list[Submission], scripts: list[Script],
                by_id: dict[str, Job], folder: Path, todo: int,
                after: str) -> list[Submission]:
    """Write and submit ``scripts`` (waiting, with ``after``, for those ids to succeed)."""
    new = []
    for script in scripts:
        path = folder / script.name
        if script.chunk_name:
            # The chunk's job records too: a task finds its job there, in a file the
            # size of one array, not in the whole plan (issue 18: O(1) in the run).
            atomic_write_text(folder / chunk_records(script.chunk_name), "".join(
                json.dumps(by_id[i].to_record(), sort_keys=True) + "\n"
                for i in script.chunk_ids))
            atomic_write_text(folder / script.chunk_name,
                              "\n".join(script.chunk_ids) + "\n")
        atomic_write_text(path, script.text)
        record = Submission(script.kind, "", script.name, script.tag,
                            script.chunk_name, len(script.chunk_ids) or todo,
                            time.time(), after, bool(after))
        new.append(_record_and_submit(store, records, record, path))
    return new


def _adaptive_preview(sweep: Sweep) -> list[Job]:
    """For --dry-run: jobs shaped like one batch of trials (asking would write the study),
    or a population's first segments."""
    template = JobTemplate.of(sweep)
    count = sweep.search.budget if sweep.search.pbt is not None else max(1, sweep.search.batch)
    return [job for index in range(count) for job in template.jobs(index, {}, trial=True)]


def adaptive_finished(store: RunStore) -> int:
    """Trials told (optuna), or members finished (pbt)."""
    manifest = store.manifest()
    if manifest.pbt is not None:
        from candle.adaptive.pbt import finished_members

        return finished_members(store.root)
    from candle.adaptive.study import told_trials

    return told_trials(store.root, manifest.name)


def next_batch(store: RunStore) -> list[Job]:
    """Array mode: tell the trials whose array tasks ended, ask up to ``batch`` trials,
    and return the jobs to submit. Runs on the login node, holding the run's lock: the
    only writer of the study while no allocation supervises it."""
    from candle.adaptive.source import OptunaSource
    from candle.adaptive.study import open_study

    manifest = store.manifest()
    config = manifest.optuna
    assert config is not None and manifest.template is not None, "an Optuna run"
    source = OptunaSource(store, open_study(store.root, config), config,
                          JobTemplate.from_record(manifest.template), adopt_running=True,
                          max_live=config.batch)
    pending = []
    while (job := source.next_job()) is not None:
        state = store.state(job.id)
        if state in (JobState.DONE, JobState.PRUNED) or state.failed:
            source.on_result(job, state, store.result(job.id))
            continue
        pending.append(job)
    return pending


def cancel_run(store: RunStore) -> list[str]:
    ids = [r.job_id for r in reconcile(store) if r.job_id]
    backend_of(store).cancel(ids)
    return ids


def batch_report(store: RunStore) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """For `candle status`: each submission with its tasks' states (ONE status query), and
    for jobs whose array task ended without completing, that state (e.g. TIMEOUT)."""
    records = [r for r in submissions(store) if r.job_id]
    if not records:
        return [], {}
    backend = backend_of(store)
    states = backend.status([r.job_id for r in records])
    rows: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    for record in records:
        mine = backend.entries_of(states, record.job_id)
        counts: dict[str, int] = {}
        for state in mine.values():
            counts[state.value] = counts.get(state.value, 0) + 1
        rows.append({"job_id": record.job_id, "kind": record.kind, "count": record.count,
                     "states": counts})
        if record.kind == "array" and record.chunk:
            chunk = batch_dir(store) / record.chunk
            ids = chunk.read_text().split() if chunk.is_file() else []
            for index, job_id in enumerate(ids):
                task_id = backend.task_id(record.job_id, index)
                task = mine.get(task_id)
                if task is not None and task.terminal and task is not AllocState.COMPLETED:
                    notes[job_id] = f"{task.value} ({backend.LABEL} job {task_id})"
    return rows, notes
