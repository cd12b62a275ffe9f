"""The readers' result cache (issue 18): a poll opens the results new since the last one,
not one file per job; the per-job result.json files stay the truth."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from candle.plan.jobs import Job
from candle.reporting import collect_status, summarise
from candle.schedulers.batch.follow import _finished
from candle.spec.model import Resources
from candle.state import JobState
from candle.store.manifest import RunManifest
from candle.store.run_store import RunStore

JOBS = 300
_ACTIVE: list[list[str]] = []  # the open paths being counted (audit hooks stay for good)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _ACTIVE and event == "open" and isinstance(args[0], str | Path):
        _ACTIVE[-1].append(os.fspath(args[0]))


sys.addaudithook(_hook)


def opened(work: Callable[[], object], root: Path) -> list[str]:
    """The files under ``root`` that ``work`` opened (attempts included)."""
    _ACTIVE.append([])
    try:
        work()
    finally:
        paths = _ACTIVE.pop()
    return [p for p in paths if os.path.abspath(p).startswith(str(root))]


def results_in(paths: list[str]) -> list[str]:
    return [p for p in paths if p.endswith("result.json")]


def job_id(i: int, spread: bool = False) -> str:
    """Job i's id; ``spread``: over all 16 shards of the cache, as hashed ids are."""
    return f"{i % 16:x}{i:011x}" if spread else f"{i:012x}"


def make_run(root: Path, finished: int, pending: int = 0, spread: bool = False) -> RunStore:
    jobs = [Job(job_id(i, spread), i // 3, {"x": i // 3}, {"x": i // 3}, None, None, i % 3, i)
            for i in range(finished + pending)]
    store = RunStore(root)
    store.initialise("", RunManifest(
        name="idx", benchmark="m:f", metric="val_loss", method="grid", base_dir=root,
        source=root / "sweep.yaml", resources=Resources("local", 1, 0, "00:00:00", 1)), jobs)
    for i, job in enumerate(jobs[:finished]):
        store.write_params(job)
        store.write_result(job.id, {"status": "done", "metrics": {"val_loss": i / 10},
                                    "history": {"val_loss": [1.0, i / 10]}})
    return store


@pytest.fixture
def run(tmp_path: Path) -> Iterator[RunStore]:
    yield make_run(tmp_path / "run", JOBS, pending=5)


def test_a_second_poll_opens_no_result_and_sees_a_new_one(run: RunStore) -> None:
    """One `--wait`: the same store poll after poll."""
    first = opened(lambda: _finished(run, None), run.root)
    assert len(results_in(first)) == JOBS  # no cache yet: every result once
    second = opened(lambda: _finished(run, None), run.root)
    assert results_in(second) == []
    assert len(second) <= 2  # plan.jsonl is not even re-read: it did not change
    assert _finished(run, None) == JOBS
    new = next(j for j in run.jobs() if j.id == f"{JOBS:012x}")
    run.write_params(new)
    run.write_result(new.id, {"status": "done", "metrics": {"val_loss": 0.0}})
    third = opened(lambda: _finished(run, None), run.root)
    assert results_in(third) == [str(run.job_dir(new.id) / "result.json")]
    assert _finished(run, None) == JOBS + 1


def test_a_new_command_reads_the_cache_not_the_results(run: RunStore) -> None:
    """`candle summary` then `candle status` (each a new RunStore): the second opens no
    result.json, and both agree with the results themselves."""
    first = opened(lambda: summarise(RunStore(run.root)), run.root)
    assert len(results_in(first)) == JOBS
    status_opens = opened(lambda: collect_status(RunStore(run.root)), run.root)
    assert results_in(status_opens) == []
    summary_opens = opened(lambda: summarise(RunStore(run.root)), run.root)
    assert results_in(summary_opens) == []
    assert len(summary_opens) < 30  # run.json, plan.jsonl, the 16 shards
    status = collect_status(RunStore(run.root))
    assert status.counts[JobState.DONE] == JOBS and status.counts[JobState.PENDING] == 5
    best = summarise(RunStore(run.root)).rows[0]
    assert best.point == 0 and best.mean == pytest.approx(0.1)


def test_the_cache_follows_retries_and_deletions(run: RunStore) -> None:
    summarise(RunStore(run.root))
    jobs = list(run.jobs())
    retried, deleted = jobs[JOBS], jobs[2]  # a job not finished yet; a done one
    run.write_params(retried)
    run.write_result(retried.id, {"status": "failed", "error": "boom", "attempt": 1})
    status = collect_status(RunStore(run.root), tail_lines=0)  # a later command
    assert [f.error for f in status.failures] == ["boom"]
    run.clear_result(retried.id)  # a retry: the failure moves to attempts.jsonl
    assert collect_status(RunStore(run.root), tail_lines=0).failures == []
    run.write_result(retried.id, {"status": "done", "metrics": {"val_loss": 9.0}})
    shutil.rmtree(run.job_dir(deleted.id))
    status = collect_status(RunStore(run.root), tail_lines=0)
    assert status.failures == []
    assert status.counts[JobState.DONE] == JOBS  # one more done, one deleted
    assert RunStore(run.root).results()[retried.id] == {"status": "done",
                                                       "metrics": {"val_loss": 9.0}}


def test_a_done_result_is_trusted_while_its_job_directory_stays(run: RunStore) -> None:
    """candle never replaces a done result, so later commands do not stat it (a cold
    10^5-job summary would spend most of its time there); a job directory made anew is
    read again, and a result edited by hand in place is seen once index/ is deleted."""
    RunStore(run.root).results()
    edited, remade = list(run.jobs())[1:3]
    run.write_result(edited.id, {"status": "done", "metrics": {"val_loss": 9.0}})
    aside = run.root / "aside"  # kept until the new directory exists: a new inode
    os.replace(run.job_dir(remade.id), aside)
    run.write_params(remade)
    run.write_result(remade.id, {"status": "done", "metrics": {"val_loss": 7.0}})
    shutil.rmtree(aside)
    opens = opened(lambda: RunStore(run.root).results(), run.root)
    assert results_in(opens) == [str(run.job_dir(remade.id) / "result.json")]
    results = RunStore(run.root).results()
    assert results[remade.id] == {"status": "done", "metrics": {"val_loss": 7.0}}
    assert results[edited.id] == {"status": "done", "metrics": {"val_loss": 0.1}}  # trusted
    shutil.rmtree(run.root / "index")
    assert RunStore(run.root).results()[edited.id] == {"status": "done",
                                                      "metrics": {"val_loss": 9.0}}


def test_a_damaged_or_missing_cache_is_rebuilt(run: RunStore) -> None:
    want = RunStore(run.root).results()
    shards = sorted((run.root / "index").glob("results-*.json"))
    assert shards and all("history" not in s.read_text() for s in shards)  # slim entries
    shards[0].write_text('{"version": 1, "entries": {')  # torn (not by candle: it renames)
    assert RunStore(run.root).results() == want
    json.loads(shards[0].read_text())  # rewritten whole
    shutil.rmtree(run.root / "index")
    assert RunStore(run.root).results() == want
    assert want[f"{0:012x}"] == {"status": "done", "metrics": {"val_loss": 0.0}}


def test_a_read_only_run_is_read_without_a_cache(run: RunStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A run directory the reader may not write (another user's; as root chmod would not
    stop us, so the refusal is made by hand): read from the results, no cache, no error."""
    import candle.store.results_index as results_index

    shutil.rmtree(run.root / "index", ignore_errors=True)

    def refuse(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(results_index, "atomic_write_text", refuse)
    assert _finished(RunStore(run.root), None) == JOBS
    assert not list((run.root / "index").glob("results-*.json"))


def test_the_plan_copy_follows_plan_jsonl(tmp_path: Path) -> None:
    """index/plan.json is used only while it is of the plan.jsonl there: an append (an
    adaptive search's new trials) or a rewrite (a changed sweep) makes it again."""
    store = make_run(tmp_path / "run", 4, pending=2)
    want = list(store.jobs())
    assert (store.root / "index" / "plan.json").is_file()
    again = RunStore(store.root)
    paths = opened(lambda: list(again.jobs()), store.root)
    assert [os.path.basename(p) for p in paths] == ["plan.json"]  # not plan.jsonl
    assert list(again.jobs()) == want
    extra = Job("feedfeedfeed", 9, {"x": 9}, {"x": 9, "y": [1]}, 1, 3, 0, 5, {"ranks": 2})
    store.append_jobs([extra])
    assert list(RunStore(store.root).jobs()) == [*want, extra]
    store.initialise("", store.manifest(), want[:3])
    assert list(RunStore(store.root).jobs()) == want[:3]
    (store.root / "index" / "plan.json").write_text("{")  # damaged: parsed again
    assert list(RunStore(store.root).jobs()) == want[:3]


def test_a_status_watch_refresh_opens_no_result(run: RunStore) -> None:
    """`candle status --watch`: one store, snapshot after snapshot."""
    from candle.reporting.watch import take_snapshot

    first = take_snapshot(run)
    again = opened(lambda: take_snapshot(run, previous=first), run.root)
    assert results_in(again) == []
    assert len(again) <= 3  # run.json (the manifest), and no result or marker
    assert take_snapshot(run).finished == JOBS


def test_status_reads_the_states_not_the_results(tmp_path: Path) -> None:
    """`candle status` and a `--wait` poll need states: the results files (metrics) stay
    closed; a failure's error comes from its own shard only."""
    run = make_run(tmp_path / "run", JOBS, pending=5, spread=True)
    RunStore(run.root).results()
    paths = opened(lambda: collect_status(RunStore(run.root), tail_lines=0), run.root)
    assert [p for p in paths if "/index/results-" in p] == []
    assert len([p for p in paths if "/index/states-" in p]) == 16
    failing = next(j for j in run.jobs() if j.id == job_id(JOBS, spread=True))
    run.write_params(failing)
    run.write_result(failing.id, {"status": "failed", "error": "boom", "attempt": 2})
    store = RunStore(run.root)
    paths = opened(lambda: collect_status(store, tail_lines=0), run.root)
    shard = f"/index/results-{failing.id[0]}.json"
    assert {p[p.index("/index/"):] for p in paths if "/index/results-" in p} == {shard}
    assert [(f.job_id, f.error, f.attempt) for f in collect_status(store, 0).failures] == [
        (failing.id, "boom", 2)]


def test_a_results_file_of_another_generation_is_rebuilt(tmp_path: Path) -> None:
    """A reader killed between writing a shard's results file and its states file: the
    two disagree, and that shard's results are read again from result.json (only it)."""
    run = make_run(tmp_path / "run", JOBS, spread=True)
    want = RunStore(run.root).results()
    path = run.root / "index" / "results-0.json"
    data = json.loads(path.read_text())
    data["generation"] = "another"
    path.write_text(json.dumps(data))
    in_shard = [job_id for job_id, result in want.items() if job_id[0] == "0" and result]
    store = RunStore(run.root)
    paths = opened(lambda: store.results(), run.root)
    assert sorted(results_in(paths)) == sorted(
        str(run.job_dir(job_id) / "result.json") for job_id in in_shard)
    assert store.results() == want
    assert results_in(opened(lambda: RunStore(run.root).results(), run.root)) == []
