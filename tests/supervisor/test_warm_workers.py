"""resources.workers: warm (issue 19): a node's worker imports TensorFlow once and forks a
child per job. A job computes the same numbers as in its own process; one that segfaults,
is SIGKILLed (what the kernel's OOM killer does) or runs out of memory fails alone and is
retried, while the worker goes on serving the rest; a worker that dies takes only its
running jobs, and a new one takes the node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from candle.launch import LocalLauncher
from candle.plan import iter_jobs
from candle.spec import load_sweep
from candle.state import JobState
from candle.store import RunStore
from candle.store.run_store import ATTEMPTS
from candle.supervisor.run import build_supervisor, run_meta
from candle.supervisor.slots import Node, SlotPool
from tests.conftest import candle_cmd, write

# Every job writes its own pid and its parent's (the worker's, when forked by one).
CRASHING_MODEL = """
import ctypes, os, signal
from pathlib import Path


def f(params):
    x = params["x"]
    (Path(params["job_dir"]) / f"pids-{os.getpid()}").write_text(str(os.getppid()))
    if x == 1:
        ctypes.string_at(0)  # SIGSEGV
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # how the kernel's OOM killer ends a process
    if x == 3:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
        bytearray(1 << 32)  # MemoryError: raised, caught, the job fails
    return {"val_loss": float(x)}
"""


def sweep_file(tmp_path: Path, workers: str, xs: list[int], *, retries: int = 1,
               model: str = CRASHING_MODEL, name: str = "warm") -> Path:
    write(tmp_path / "model.py", model)
    return write(tmp_path / f"{name}.yaml", f"""
        name: {name}
        benchmark: "model:f"
        search:
          method: grid
          space: {{x: {xs}}}
          metric: val_loss
        resources: {{max_concurrent: 2, workers: {workers}}}
        retries: {retries}
    """)


def parents(store: RunStore, job_id: str) -> list[int]:
    """The parent pid of every attempt of the job."""
    return [int(p.read_text()) for p in store.job_dir(job_id).glob("pids-*")]


def attempts(store: RunStore, job_id: str) -> list[dict[str, Any]]:
    path = store.job_dir(job_id) / ATTEMPTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def by_x(store: RunStore) -> dict[int, str]:
    return {job.point_params["x"]: job.id for job in store.jobs()}


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["warm", "process"])
def test_a_crashing_job_fails_alone_and_is_retried(tmp_path: Path, cli, workers: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", str(sweep_file(tmp_path, workers, [0, 1, 2, 3, 4, 5])))
    assert result.code == 1, result.err
    assert "3 done, 3 failed" in result.out
    store = RunStore(tmp_path / "runs" / "warm")
    jobs = by_x(store)
    for x in (0, 4, 5):
        assert store.state(jobs[x]) is JobState.DONE
    errors = {1: "killed by signal SIGSEGV", 2: "killed by signal SIGKILL",
              3: "MemoryError"}
    for x, error in errors.items():
        final = store.result(jobs[x]) or {}
        assert final["status"] == "failed" and error in final["error"], final
        assert final["attempt"] == 2 and len(attempts(store, jobs[x])) == 1  # retried once
    pids = {pid for job in jobs.values() for pid in parents(store, job)}
    if workers == "warm":
        # every attempt of every job, crashed or not, was forked by the same worker
        assert len(pids) == 1
        assert (store.root / "workers" / "localhost.log").exists()
    else:
        assert not (store.root / "workers").exists()


NT3_SWEEP = """
    name: {name}
    benchmark: nt3
    params: {{epochs: 2, features: 120, samples: 160, batch_size: 16}}
    search:
      method: grid
      space: {{learning_rate: [0.001, 0.01]}}
      metric: val_loss
    resources: {{max_concurrent: 2, workers: {workers}}}
"""


@pytest.mark.slow
@pytest.mark.integration
def test_a_job_computes_the_same_numbers_warm_and_as_its_own_process(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    results = {}
    for workers in ("warm", "process"):
        sweep = write(tmp_path / f"{workers}.yaml", NT3_SWEEP.format(name=workers,
                                                                    workers=workers))
        result = cli("run", str(sweep))
        assert result.code == 0, result.err
        store = RunStore(tmp_path / "runs" / workers)
        results[workers] = {job.id: store.result(job.id) or {} for job in store.jobs()}
    assert results["warm"].keys() == results["process"].keys() and len(results["warm"]) == 2
    for job_id, warm in results["warm"].items():
        cold = results["process"][job_id]
        assert warm["metrics"] == cold["metrics"]
        assert warm["history"] == cold["history"]


# Waits until its job dir holds "go", so that the test can kill the worker mid-job.
WAITING_MODEL = """
import os, time
from pathlib import Path


def f(params):
    job_dir = Path(params["job_dir"])
    (job_dir / f"pids-{os.getpid()}").write_text(str(os.getppid()))
    if params["x"] == 1 and not (job_dir / "go").exists():
        while not (job_dir / "go").exists():
            time.sleep(0.02)
    return {"val_loss": float(params["x"])}
"""


@pytest.mark.slow
def test_a_worker_that_dies_takes_only_its_jobs_and_is_replaced(tmp_path: Path) -> None:
    sweep = sweep_file(tmp_path, "warm", [1, 2, 3], model=WAITING_MODEL)
    store = RunStore(tmp_path / "runs" / "warm")
    run = subprocess.Popen(candle_cmd("run", str(sweep)), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        first: list[int] = []
        while not first:  # x=1 has started in the worker
            assert run.poll() is None and time.time() < deadline, run.communicate()
            if store.exists():
                first = parents(store, by_x(store)[1])
            time.sleep(0.05)
        job_dir = store.job_dir(by_x(store)[1])
        (child,) = (int(p.name.split("-")[1]) for p in job_dir.glob("pids-*"))
        os.kill(first[0], signal.SIGKILL)  # the worker
        while Path(f"/proc/{child}").exists():  # its job dies with it (PDEATHSIG, async)
            assert time.time() < deadline
            time.sleep(0.01)
        (job_dir / "go").write_text("")  # only the retry may finish
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert "the warm worker on localhost died; starting a new one" in out + err
    jobs = by_x(store)
    assert all(store.state(job) is JobState.DONE for job in jobs.values())
    [lost] = attempts(store, jobs[1])
    assert lost["error"] == "killed by signal SIGKILL"
    workers = set(parents(store, jobs[1]))
    assert len(workers) == 2 and first[0] in workers  # the retry ran in a new worker


def test_the_worker_answers_run_and_exit_on_its_pipes(tmp_path: Path) -> None:
    """The wire format, end to end with a real worker: a job whose command is wrong exits
    2 in its forked child (its log says why) and the worker goes on; exit ends it."""
    from candle.launch.warm import decode, encode, worker_argv

    worker = subprocess.Popen(worker_argv(tmp_path / "no-run"), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert worker.stdin is not None and worker.stdout is not None

    def said() -> dict[str, Any]:
        assert worker.stdout is not None
        message = decode(worker.stdout.readline())
        assert message is not None
        return message

    try:
        ready = said()
        assert ready["op"] == "ready" and ready["pid"] == worker.pid
        log = tmp_path / "job.log"
        worker.stdin.write(encode({"op": "run", "id": 7, "args": ["--no-such-flag"],
                                   "env": {}, "log": str(log), "cwd": str(tmp_path)}))
        worker.stdin.flush()
        started, exited = said(), said()
        assert (started["op"], started["id"]) == ("started", 7) and started["pid"] > 0
        assert exited == {"op": "exited", "id": 7, "code": 2}
        assert "the following arguments are required: run_dir, job_id" in log.read_text()
        worker.stdin.write(encode({"op": "exit"}))
        worker.stdin.flush()
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()


class BrokenWorkerLauncher(LocalLauncher):
    """A launcher whose warm worker dies before it is ready (as one whose imports fail)."""

    def worker_argv(self, run_dir: Path, node: str, cpus: int) -> list[str]:
        return [sys.executable, "-c", "import sys; print('no tensorflow here', "
                                      "file=sys.stderr); sys.exit(3)"]


@pytest.mark.slow
def test_a_worker_that_cannot_start_leaves_the_jobs_to_processes(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path, "warm", [0, 4, 5]))
    store = RunStore(sweep.run_dir)
    store.initialise(sweep.text, run_meta(sweep), iter_jobs(sweep))
    notices: list[str] = []
    supervisor = build_supervisor(store, store.manifest(), BrokenWorkerLauncher(),
                                  SlotPool([Node("localhost", 2)]), threads=1, deadline=None,
                                  on_notice=notices.append)
    assert supervisor.warm is not None
    outcome = supervisor.run(store.jobs())
    assert (outcome.done, outcome.failed) == (3, 0)
    assert any("the warm worker on localhost failed to start" in n and "workers/localhost.log"
               in n for n in notices), notices
    assert "no tensorflow here" in (store.root / "workers" / "localhost.log").read_text()
    for job in store.jobs():  # the last attempt of each ran as its own process
        log = store.log_path(job.id).read_text()
        assert log.rstrip().splitlines()[-2].split(": ", 1)[1].startswith(sys.executable)


def test_multi_rank_jobs_are_launched_one_by_one_even_when_warm(tmp_path: Path) -> None:
    """MPI cannot start again in a forked child: a 2-rank job is its own mpirun."""
    sweep = load_sweep(sweep_file(tmp_path, "warm", [0]))
    store = RunStore(sweep.run_dir)
    store.initialise(sweep.text, run_meta(sweep), iter_jobs(sweep))
    manifest = store.manifest()
    two = replace(manifest, resources=replace(manifest.resources, ranks_per_job=2))
    supervisor = build_supervisor(store, two, LocalLauncher(), SlotPool([Node("localhost", 2)]),
                                  threads=1, deadline=None)
    assert supervisor.warm is None
    one = build_supervisor(store, manifest, LocalLauncher(), SlotPool([Node("localhost", 2)]),
                           threads=1, deadline=None)
    assert one.warm is not None


def parent_of(pid: int) -> int:
    """From /proc/PID/stat: the field after the state (the command may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


@pytest.mark.slow
def test_a_cgroup_wide_sigterm_lets_a_warm_job_reach_its_checkpoint(tmp_path: Path) -> None:
    """scancel and qdel signal every process of the job: the supervisor, the worker and its
    forked job. The worker must outlive its job (its children die with it), so that the
    job stops at its next epoch end, `interrupted`; the same command resumes it."""
    from tests.chaos.test_walltime import epoch_sweep, epochs_logged, run

    sweep = epoch_sweep(tmp_path, 1, epochs=12, epoch_s=0.5)
    store = RunStore(tmp_path / "runs" / "wall")
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (store.exists() and (store.job_dir(next(iter(store.jobs())).id)
                                       / "epochs.log").exists()):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
        (job,) = store.jobs()
        marker = json.loads((store.job_dir(job.id) / "running.json").read_text())
        child = marker["pid"]  # the job's own process, as `kill` expects
        worker = parent_of(child)
        assert worker != proc.pid  # forked by the worker, not the supervisor
        for pid in (worker, child, proc.pid):
            os.kill(pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    stopped = store.result(job.id) or {}
    assert stopped.get("status") == "interrupted", (stopped, err)
    step = stopped.get("interrupted_at_step")
    assert isinstance(step, int) and 1 <= step < 12, stopped
    assert epochs_logged(store, job.id) == list(range(1, step + 1))
    again = run(sweep)
    assert again.returncode == 0, again.stderr
    assert (store.result(job.id) or {})["status"] == "done"
    assert epochs_logged(store, job.id) == list(range(1, 13))  # none twice, none lost


RANDOM_MODEL = """
import json, random
from pathlib import Path

import numpy as np


def f(params):
    drawn = [random.random(), float(np.random.rand())]  # unseeded, as some models do
    (Path(params["job_dir"]) / "drawn.json").write_text(json.dumps(drawn))
    return {"val_loss": drawn[0]}
"""


@pytest.mark.slow
def test_unseeded_randomness_differs_between_warm_jobs(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A fork copies the worker's generators: each job gets fresh ones, as a new process."""
    result = cli("run", str(sweep_file(tmp_path, "warm", [0, 1, 2, 3], model=RANDOM_MODEL)))
    assert result.code == 0, result.err
    store = RunStore(tmp_path / "runs" / "warm")
    drawn = [tuple(json.loads((store.job_dir(job.id) / "drawn.json").read_text()))
             for job in store.jobs()]
    assert len({d[0] for d in drawn}) == 4 and len({d[1] for d in drawn}) == 4, drawn
