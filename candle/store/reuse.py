"""``search.seed_from`` for a grid, random or list search: a planned job whose identical
job (same id: same benchmark, params, fold, replica, seed and settings) is done in the
previous run directory is not run again. Its job directory's files (predictions.npz,
ckpt/, the log) come over as hard links where the filesystem allows, copies otherwise,
each by an atomic rename; its result comes last (the commit: a job is done only once its
result says so), marked ``"reused_from": "<the previous run directory>"``.

Hard links are safe because candle never changes a file in place (every write is a new
file renamed over the old one), so the two runs never see each other's later writes."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from candle.state import JobState
from candle.store.atomic import atomic_write_json
from candle.store.run_store import ATTEMPTS, REPORT, RESULT, RUNNING, VERDICT, RunStore

# Not brought over: the result (written last, marked), what belongs to one attempt or one
# supervisor, and the job record (written from this run's plan: its point index may differ).
NOT_COPIED = frozenset({RESULT, RUNNING, REPORT, VERDICT, ATTEMPTS, "params.json"})


def reuse_results(store: RunStore, source: RunStore) -> int:
    """Bring ``source``'s done results of this run's planned jobs that are not done here;
    return how many came."""
    reused = 0
    label = str(source.root)
    for job in store.jobs():
        if store.state(job.id) in (JobState.DONE, JobState.RUNNING):
            continue
        result = source.result(job.id)
        if result is None or result.get("status") != "done":
            continue
        _bring_files(source.job_dir(job.id), store.job_dir(job.id))
        store.clear_result(job.id)  # an earlier failure here goes to its attempts
        store.clear_running(job.id)  # a marker a dead supervisor left
        store.write_params(job)
        atomic_write_json(store.job_dir(job.id) / RESULT, {**result, "reused_from": label})
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
            _link_or_copy(path, dst / rel / name)


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.reuse"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, tmp)
    try:
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
