"""OptunaSource: the supervisor's job source for an adaptive search.

A trial is asked only when a slot is free (never a lock-step batch), its folds x replicas
jobs go to the plan, and when the last of them ends the trial is told: the mean of each
metric over its jobs, PRUNED, or FAILED. While jobs run, their epoch reports (files in the
job directory) become the trial's intermediate values — from the trial's first job, its
"lead" — and the pruner's verdict is written back for the job's rank 0 to broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from candle.adaptive.config import OptunaConfig
from candle.adaptive.study import (
    FAILED_ATTR,
    KEY_ATTR,
    recover_interrupted,
    used_budget,
)
from candle.plan.jobs import Job, JobTemplate
from candle.spec.samplers import SearchSpace, search_space
from candle.state import JobState
from candle.store.run_store import RunStore

TrialEvent = Callable[[int, str, Any], None]  # (trial number, state, values)


@dataclass
class _Live:
    trial: Any  # optuna.Trial
    key: int
    jobs: list[Job]
    pending: list[Job]
    launched: set[str] = field(default_factory=set)
    results: dict[str, tuple[JobState, dict[str, Any] | None]] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)  # job id -> last step answered
    reported: set[int] = field(default_factory=set)  # steps given to trial.report
    pruned: bool = False
    failure: str | None = None

    @property
    def lead(self) -> Job:
        return self.jobs[0]

    @property
    def ended(self) -> bool:
        return not self.pending and not self.launched


class OptunaSource:
    def __init__(self, store: RunStore, study: Any, config: OptunaConfig,
                 template: JobTemplate, on_trial: TrialEvent | None = None, *,
                 adopt_running: bool = False, max_live: int = 0) -> None:
        """``adopt_running``: trials left RUNNING are still ours (array mode: asked by an
        earlier `candle run`, their jobs ran as array tasks) rather than interrupted.
        ``max_live``: at most this many trials at once (array mode's batch); 0: no limit."""
        self.store = store
        self.study = study
        self.config = config
        self.template = template
        self.on_trial = on_trial or (lambda number, state, values: None)
        self.space: SearchSpace = search_space(config.dimensions())
        self.max_live = max_live
        self.live: dict[int, _Live] = {}  # trial number -> live trial
        self._by_job: dict[str, _Live] = {}
        plan = {job.id: job for job in store.jobs()}
        self._known = set(plan)
        if adopt_running:
            self._adopt(plan)
        self.recovered = recover_interrupted(study, keep=frozenset(self.live))
        self.used = used_budget(study)

    # -- what the supervisor asks -------------------------------------------------------
    def next_job(self) -> Job | None:
        for live in self.live.values():
            if live.pending:
                return self._take(live)
        if self.max_live and len(self.live) >= self.max_live:
            return None
        if self.used + len(self.live) < self.config.trials:
            return self._take(self._ask())
        return None

    def exhausted(self) -> bool:
        return not self.live and self.used >= self.config.trials

    def wanted(self, job: Job) -> bool:
        live = self._by_job.get(job.id)
        return live is not None and not live.pruned and live.failure is None

    def on_result(self, job: Job, state: JobState, result: dict[str, Any] | None) -> None:
        live = self._by_job.get(job.id)
        if live is None:
            return
        live.launched.discard(job.id)
        live.results[job.id] = (state, result)
        if state is JobState.PRUNED:
            live.pruned = True
            live.pending.clear()
        elif state.failed and live.failure is None:  # failed, or timed out
            live.failure = str((result or {}).get("error") or "a job failed")
            live.pending.clear()
        if live.ended:
            self._tell(live)

    def poll(self, running: list[Job]) -> None:
        """Answer each running job's newest epoch report: go on, or prune."""
        for job in running:
            live = self._by_job.get(job.id)
            report = self.store.read_report(job.id) if live is not None else None
            if live is None or report is None:
                continue
            step = int(report.get("step", 0))
            if step <= live.answered.get(job.id, 0):
                continue
            if job.id == live.lead.id:
                self._report(live, step, report.get("metrics", {}))
                if self.config.pruning and not live.pruned and live.trial.should_prune():
                    live.pruned = True
                    live.pending.clear()
            live.answered[job.id] = step
            if self.config.pruning:
                self.store.write_verdict(job.id, step, live.pruned)

    # -- inside -------------------------------------------------------------------------
    def _adopt(self, plan: dict[str, Job]) -> None:
        import optuna
        from optuna.trial import TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ids = frozen.user_attrs.get("candle_jobs", [])
            jobs = [plan[i] for i in ids if i in plan]
            if not jobs or len(jobs) != len(ids):
                continue  # asked, but its jobs never reached the plan: left to recovery
            # A live handle on a stored trial (Optuna's ask() hands out the same kind).
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            live = _Live(trial, int(frozen.user_attrs.get(KEY_ATTR, frozen.number)), jobs,
                         list(jobs))
            self.live[frozen.number] = live
            for job in jobs:
                self._by_job[job.id] = live

    def _take(self, live: _Live) -> Job:
        job = live.pending.pop(0)
        live.launched.add(job.id)
        return job

    def _ask(self) -> _Live:
        trial = self.study.ask(fixed_distributions=self.space.distributions)
        key = int(trial.user_attrs.get(KEY_ATTR, trial.number))
        if KEY_ATTR not in trial.user_attrs:
            trial.set_user_attr(KEY_ATTR, key)
        params = self.space.decode(trial.params)
        jobs = self.template.jobs(key, params, trial=True)
        trial.set_user_attr("candle_jobs", [job.id for job in jobs])
        new = [job for job in jobs if job.id not in self._known]
        self.store.append_jobs(new)
        self._known.update(job.id for job in new)
        live = _Live(trial, key, jobs, list(jobs))
        self.live[trial.number] = live
        for job in jobs:
            self._by_job[job.id] = live
        self.on_trial(trial.number, "asked", params)
        return live

    def _report(self, live: _Live, step: int, metrics: dict[str, Any]) -> None:
        if self.config.multi_objective or step in live.reported:
            return  # Optuna keeps intermediate values for single-objective studies only
        value = metrics.get(self.config.metrics[0])
        if isinstance(value, int | float) and math.isfinite(value):
            live.trial.report(float(value), step)
            live.reported.add(step)

    def _report_history(self, live: _Live) -> None:
        """Steps the lead ran but nobody answered (no pruner, or a retried trial whose jobs
        were already done) still become intermediate values: learning curves, and the
        pruner's statistics for later trials."""
        _, result = live.results.get(live.lead.id, (JobState.FAILED, None))
        series = (result or {}).get("history", {}).get(self.config.metrics[0], [])
        for step, value in enumerate(series, start=1):
            self._report(live, step, {self.config.metrics[0]: value})

    def _tell(self, live: _Live) -> None:
        from optuna.trial import TrialState

        del self.live[live.trial.number]
        for job in live.jobs:
            self._by_job.pop(job.id, None)
        self._report_history(live)
        number = live.trial.number
        if live.pruned:
            self.study.tell(live.trial, state=TrialState.PRUNED)
            self.used += 1
            self.on_trial(number, "pruned", None)
            return
        values = self._values(live) if live.failure is None else None
        if values is None:
            live.trial.set_user_attr(FAILED_ATTR, live.failure or "a metric is missing or "
                                                                  "not finite")
            self.study.tell(live.trial, state=TrialState.FAIL)
            self.used += 1
            self.on_trial(number, "failed", live.failure)
            return
        self.study.tell(live.trial, values if self.config.multi_objective else values[0])
        self.used += 1
        self.on_trial(number, "complete", values)

    def _values(self, live: _Live) -> list[float] | None:
        """Each metric's mean over the trial's jobs (its folds and replicas)."""
        values = []
        for metric in self.config.metrics:
            per_job = [(r or {}).get("metrics", {}).get(metric) for _, r in live.results.values()]
            if not per_job or not all(isinstance(v, int | float) and math.isfinite(v)
                                      for v in per_job):
                live.failure = f"metric {metric!r} missing or not finite in a job's result"
                return None
            values.append(sum(per_job) / len(per_job))
        return values

