"""The journal on a shared filesystem: a writer killed mid-append or while holding the
lock must not stop the next one (Optuna issues #5138 and #5921), and writers that take
turns lose nothing. NFS itself is not here: these run on the local filesystem, where
flock and O_APPEND behave as on an NFSv4 client with working locks."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from candle.adaptive.journal import FlockLock, journal_path, open_storage
from candle.adaptive.study import open_study
from tests.adaptive.simulate import config

TORN = b'{"op_code":5,"worker_id":"w","trial_id":3,"param_na'


def _add_trials(run_dir: Path, count: int) -> None:
    study = open_study(run_dir, config("random", 0, 100, dims=1))
    for _ in range(count):
        trial = study.ask({"x0": optuna.distributions.FloatDistribution(-5, 5)})
        study.tell(trial, trial.params["x0"] ** 2)


def test_a_torn_last_record_is_cut_before_the_next_append(tmp_path: Path) -> None:
    _add_trials(tmp_path, 3)
    path = journal_path(tmp_path)
    with path.open("ab") as handle:  # the writer died in the middle of this append
        handle.write(TORN)
    _add_trials(tmp_path, 2)
    study = optuna.load_study(study_name="study", storage=open_storage(tmp_path, writer=False))
    assert len(study.trials) == 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert path.with_name("journal.log.torn").read_bytes().startswith(TORN)
    for line in path.read_bytes().splitlines():
        json.loads(line)


def test_without_the_repair_optuna_glues_the_next_record_to_a_torn_one(tmp_path: Path) -> None:
    """The hazard the repair exists for (what #5138's 'Extra data' error looks like)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = tmp_path / "plain.log"
    storage = JournalStorage(JournalFileBackend(str(path), JournalFileOpenLock(str(path))))
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: 1.0, n_trials=1)
    with path.open("ab") as handle:
        handle.write(TORN)
    storage = JournalStorage(JournalFileBackend(str(path), JournalFileOpenLock(str(path))))
    study = optuna.load_study(storage=storage, study_name="s")
    with pytest.raises((AttributeError, ValueError)):  # its own new trial is unreadable
        study.optimize(lambda t: 1.0, n_trials=1)
    storage = JournalStorage(JournalFileBackend(str(path), JournalFileOpenLock(str(path))))
    assert len(optuna.load_study(storage=storage, study_name="s").trials) == 1  # lost
    with pytest.raises(ValueError):  # and the next record after it trips every reader
        optuna.load_study(storage=storage, study_name="s").optimize(lambda t: 1.0, n_trials=1)


def _hold_lock_and_die(journal: str) -> None:
    FlockLock(Path(journal)).acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_writer_killed_holding_the_lock_does_not_hang_the_next(tmp_path: Path) -> None:
    _add_trials(tmp_path, 1)
    child = multiprocessing.get_context("fork").Process(
        target=_hold_lock_and_die, args=(str(journal_path(tmp_path)),))
    child.start()
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    assert Path(str(journal_path(tmp_path)) + ".lock").exists()  # the file stays; no matter
    # A fresh process appends at once: the kernel released the dead holder's flock.
    code = ("import sys; from pathlib import Path; sys.path.insert(0, '.');"
            "from tests.adaptive.test_journal import _add_trials;"
            f"_add_trials(Path({str(tmp_path)!r}), 2)")
    done = subprocess.run([sys.executable, "-c", code], timeout=20, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="study", storage=open_storage(tmp_path, writer=False))
    assert len(study.trials) == 3


def _writer(run_dir: str, count: int) -> None:
    _add_trials(Path(run_dir), count)


def test_writers_taking_turns_lose_no_record(tmp_path: Path) -> None:
    _add_trials(tmp_path, 1)  # create the study once
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_writer, args=(str(tmp_path), 25)) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    study = optuna.load_study(study_name="study", storage=open_storage(tmp_path, writer=False))
    assert len(study.trials) == 101
    assert len({t.number for t in study.trials}) == 101
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
