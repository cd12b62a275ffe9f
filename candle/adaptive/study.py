"""The run's Optuna study: create or load it, count the budget, recover from a crash.

Budget rule: a trial counts once it is COMPLETE, PRUNED, or FAILED because its model
failed (user attr ``candle_failed``); a trial seeded from ``search.seed_from`` (user attr
``candle_seeded``) never does. A trial left RUNNING by a supervisor that died is
marked FAILED without ``candle_failed`` (so it does not count) and its params are enqueued again
under the same key: the retry reuses the jobs it had already finished.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from candle.adaptive.config import OptunaConfig
from candle.adaptive.journal import open_storage

KEY_ATTR = "candle_key"  # the trial whose jobs this trial runs (itself, or the one it retries)
FAILED_ATTR = "candle_failed"  # why the model failed; such a trial counts against the budget
SEEDED_ATTR = "candle_seeded"  # a finished trial added from search.seed_from: not counted


def quiet_optuna(log_file: Path | None = None) -> None:
    """Optuna logs every trial at INFO to stderr; keep warnings, in a file if given."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if log_file is not None:
        optuna.logging.disable_default_handler()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("optuna")
        if not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
            logger.addHandler(handler)


def open_study(run_dir: Path, config: OptunaConfig) -> Any:
    """The study, created on first use, with the sweep's sampler and pruner (writer)."""
    import optuna

    from candle.spec.samplers import make_pruner, make_sampler

    quiet_optuna(Path(run_dir) / "optuna" / "optuna.log")
    study = optuna.create_study(
        storage=open_storage(run_dir, writer=True), study_name=config.study_name,
        pruner=make_pruner(config.pruner, config.pruner_options),
        directions=list(config.directions), load_if_exists=True)
    # Seeded by the sweep's seed and the trials so far: a resumed study (or the next array
    # batch, from a new process) must not draw the same first points again.
    seed = config.seed + len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(config.sampler, config.sampler_options, seed)
    return study


def read_study(run_dir: Path, study_name: str) -> Any:
    """The study for reading (summary, status); never writes."""
    import optuna

    quiet_optuna()
    return optuna.load_study(study_name=study_name,
                             storage=open_storage(run_dir, writer=False))


def counts_against_budget(trial: Any) -> bool:
    from optuna.trial import TrialState

    if SEEDED_ATTR in trial.user_attrs:
        return False  # the budget counts new trials only
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return bool(trial.state == TrialState.FAIL and FAILED_ATTR in trial.user_attrs)


def used_budget(study: Any) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if counts_against_budget(t))


def told_trials(run_dir: Path, study_name: str) -> int:
    """Trials that count against the budget, read from the journal; 0 before the study
    exists (the login node asks this; the supervisor inside an allocation writes it)."""
    from candle.adaptive.journal import journal_path

    if not journal_path(run_dir).is_file():
        return 0
    try:
        return used_budget(read_study(run_dir, study_name))
    except KeyError:  # the journal exists, the study was never created in it
        return 0


def trial_key(trial: Any) -> int:
    return int(trial.user_attrs.get(KEY_ATTR, trial.number))


def recover_interrupted(study: Any, keep: frozenset[int] = frozenset()) -> list[int]:
    """RUNNING trials (their supervisor died) → FAILED, not counted; params enqueued again
    with the same key (a trial killed mid-ask holds only some params: Optuna samples the
    rest). Safe to repeat: a retry already waiting is not enqueued twice.
    Trials numbered in ``keep`` are still being run and are left alone."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = {trial_key(t) for t in trials if t.state == TrialState.WAITING}
    recovered = []
    for trial in trials:
        if trial.state != TrialState.RUNNING or trial.number in keep:
            continue
        key = trial_key(trial)
        if key not in waiting:
            study.enqueue_trial(dict(trial.params), user_attrs={KEY_ATTR: key})
            waiting.add(key)
        study.tell(trial.number, state=TrialState.FAIL)
        recovered.append(trial.number)
    return recovered
