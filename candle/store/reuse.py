"""``search.seed_from`` for a grid, random or list search: a planned job whose identical
job (same id: same benchmark, params, fold, replica, seed and settings) is done in the
previous run directory is not run again. Its job directory's files (predictions.npz,
ckpt/, ...) come over as hard links where the filesystem allows, copies otherwise, each by
an atomic rename (`link_or_copy`); its result comes last (the commit: a job is done only
once its result says so), marked ``"reused_from": "<the previous run directory>"``, and its
TensorBoard events file is then written anew for this run's job (its HParams session holds
this run's point params, not the source's).

A link is safe for a file candle replaces whole (a new file renamed over the old one):
the two runs never see each other's later writes. The job log (log.txt) is the exception,
appended to by a later attempt, so it is copied, never linked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from candle.state import JobState
from candle.store.atomic import atomic_write_json, atomic_writer, link_or_copy
from candle.store.run_store import ATTEMPTS, REPORT, RESULT, RUNNING, VERDICT, RunStore
from candle.store.tensorboard import record_job

# Not brought over: the result (written last, marked), what belongs to one attempt or one
# supervisor, and the job record (written from this run's plan: its point index may differ).
NOT_COPIED = frozenset({RESULT, RUNNING, REPORT, VERDICT, ATTEMPTS, "params.json"})
COPIED = frozenset({"log.txt"})  # appended to in place: a copy, never a link


def reuse_results(store: RunStore, source: RunStore) -> int:
    """Bring ``source``'s done results of this run's planned jobs that are not done here;
    return how many came."""
    reused = 0
    label = str(source.root)
    states = store.states()
    for job in store.jobs():
        if states[job.id] in (JobState.DONE, JobState.RUNNING):
            continue
        result = source.result(job.id)
        if result is None or result.get("status") != "done":
            continue
        _bring_files(source.job_dir(job.id), store.job_dir(job.id))
        store.clear_result(job.id)  # an earlier failure here goes to its attempts
        store.clear_running(job.id)  # a marker a dead supervisor left
        store.write_params(job)
        marked = {**result, "reused_from": label}
        atomic_write_json(store.job_dir(job.id) / RESULT, marked)
        record_job(store.job_dir(job.id), job, marked)  # this run's point params
        reused += 1
    return reused


def _bring_files(src: Path, dst: Path) -> None:
    for folder, dirs, files in os.walk(src):
        here = Path(folder)
        rel = here.relative_to(src)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        for name in files:
            path = here / name
            if (not rel.parts and name in NOT_COPIED) or name.startswith(".") \
                    or path.is_symlink():
                continue  # temp files of a writer that died, links out of the run
            if not rel.parts and name in COPIED:
                with path.open("rb") as source, atomic_writer(dst / name) as handle:
                    shutil.copyfileobj(source, handle)
            else:
                link_or_copy(path, dst / rel / name)
