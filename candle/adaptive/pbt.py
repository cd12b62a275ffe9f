"""Population-based training (``search.method: pbt``), the CANDLE Supervisor's pbt workflow.

``population`` members train concurrently, each in segments of ``ready`` epochs; a
segment is an ordinary job (its own directory, checkpoints, retries, drains) that starts
from the checkpoint of an earlier segment (``init_from``: weights and optimizer state)
at the member's epoch (``start_epoch``). When a member's segment ends, the member is at a
ready point: ranked by its score among the members' latest scores, it either goes on
from its own checkpoint, or (bottom ``truncate`` quantile) continues from a random top
member's checkpoint with that member's hyperparameters, explored: each mutable one is
resampled from the space (probability ``resample``) or multiplied by one of ``perturb``.
Asynchronous: a member never waits for the others.

Every decision is appended to ``<run>/pbt/lineage.jsonl`` before its segment is planned
(one fsync'd line, by the supervisor that holds the run's lock), with what is needed to
make the segment again: a supervisor killed at any moment resumes from the lineage and
the segments' results, and no step is lost or applied twice (one record per member and
epoch). Records: ``start`` (a member's first segment), ``ready`` (a ready point: score,
``copied_from``, params before and after, the next segment's job), ``end`` (the member
trained all its epochs) and ``failed`` (its segment failed after its retries).
"""

from __future__ import annotations

import math
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from candle.adaptive.config import dimension_of, dimension_record
from candle.plan.jobs import REPLICA_SEED_STRIDE, Job, JobTemplate, _canonical, _hashed
from candle.plan.points import sample
from candle.spec.model import Choice, Dimension, IntRange, Sweep, Uniform
from candle.state import JobState
from candle.store.journal_file import append_records, read_records
from candle.store.run_store import RunStore

LINEAGE = Path("pbt") / "lineage.jsonl"
# What a segment job is told beyond its hyperparameters (benchmarks read these).
INIT_FROM, START_EPOCH, KEEP_STATE, MEMBER = "init_from", "start_epoch", "keep_state", "member"
CHECKPOINTS = "ckpt"  # a built-in job's checkpoint folder (candle_benchmarks._keras)


@dataclass(frozen=True)
class PbtConfig:
    """The search as run.json keeps it (the allocation's supervisor rebuilds it from here)."""

    population: int
    epochs: int
    ready: int
    truncate: float
    perturb: tuple[float, ...]
    resample: float
    metric: str
    direction: str
    seed: int
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    mutable: tuple[str, ...] = ()  # the space's params that may change mid-training
    # A replayed schedule ([{"start", "params"}], search.schedule): every member follows it
    # from its own seed, and nobody exploits.
    schedule: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, sweep: Sweep) -> PbtConfig:
        search = sweep.search
        assert search.pbt is not None
        pbt = search.pbt
        return cls(pbt.population, pbt.epochs, pbt.ready, pbt.truncate, tuple(pbt.perturb),
                   pbt.resample, search.metric, search.direction, search.seed,
                   {n: dimension_record(d) for n, d in search.space.items()},
                   tuple(pbt.mutable),
                   tuple({"start": start, "params": dict(params)}
                         for start, params in pbt.schedule))

    def dimensions(self) -> dict[str, Dimension]:
        return {name: dimension_of(record) for name, record in self.space.items()}

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PbtConfig:
        data = dict(record)
        data["perturb"] = tuple(data["perturb"])
        data["mutable"] = tuple(data.get("mutable") or ())
        data["schedule"] = tuple(data.get("schedule") or ())
        return cls(**data)

    def scheduled(self, epoch: int) -> dict[str, Any] | None:
        """The replayed schedule's params from ``epoch`` on (None without a schedule)."""
        chosen = None
        for step in self.schedule:
            if int(step["start"]) <= epoch:
                chosen = dict(step["params"])
        return chosen

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b


@dataclass
class Member:
    index: int
    params: dict[str, Any]  # its hyperparameters now (the space's names only)
    epoch: int = 0  # epochs trained: where its next segment starts
    job: Job | None = None  # its current segment (planned, running or just done)
    # Its latest done segment, what an exploit copies: the job (its checkpoint), the epoch
    # it ended at and the params it trained with (the member's may have moved on since).
    done_job: str | None = None
    done_epoch: int = 0
    done_params: dict[str, Any] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)  # epoch -> score
    finished: bool = False
    failed: bool = False
    launched: bool = False

    @property
    def latest(self) -> float | None:
        """The score of its latest done segment (epochs may go back after an exploit)."""
        return self.scores.get(self.done_epoch) if self.scores else None


def read_lineage(root: Path) -> list[dict[str, Any]]:
    path = root / LINEAGE
    return list(read_records(path)) if path.exists() else []


class PbtSource:
    """The supervisor's job source for a population: one segment per member at a time."""

    def __init__(self, store: RunStore, config: PbtConfig, template: JobTemplate) -> None:
        self.store = store
        self.config = config
        self.template = template
        self.space = config.dimensions()
        self.members: dict[int, Member] = {}
        self._by_job: dict[str, Member] = {}
        self._known = {job.id for job in store.jobs()}
        self._kept: set[str] = set()  # done segments whose checkpoint is still on disk
        self._resume(read_lineage(store.root))
        self._prune()

    # -- what the supervisor asks -------------------------------------------------------
    def next_job(self) -> Job | None:
        """The waiting segment of the member furthest behind, the best of those first: the
        population advances together when slots are fewer than members, and by the time a
        weak member reaches a ready point the strong ones it may copy have reached it."""
        waiting = [m for m in self.members.values() if m.job is not None and not m.launched
                   and not m.finished and not m.failed]
        if not waiting:
            return None
        sign = 1.0 if self.config.direction == "minimize" else -1.0
        member = min(waiting, key=lambda m: (m.epoch, _rank_key(m.latest, sign, m.index)))
        member.launched = True
        return member.job

    def exhausted(self) -> bool:
        return all(m.finished or m.failed for m in self.members.values())

    def wanted(self, job: Job) -> bool:
        member = self._by_job.get(job.id)
        return member is not None and not member.failed

    def on_result(self, job: Job, state: JobState, result: dict[str, Any] | None) -> None:
        member = self._by_job.get(job.id)
        if member is None or member.job is None or member.job.id != job.id:
            return
        member.launched = False
        if state is not JobState.DONE:
            member.failed = True
            self._write([{"event": "failed", "member": member.index, "epoch": member.epoch,
                          "job": job.id, "error": str((result or {}).get("error") or state)}])
            return
        self._ready(member, result or {})

    def poll(self, running: list[Job]) -> None:
        pass

    # -- the population -----------------------------------------------------------------
    def _resume(self, lineage: list[dict[str, Any]]) -> None:
        """Members as the lineage left them; a new population when there is none. A
        member whose recorded segment is done but has no decision yet (the supervisor died
        between the two) is decided now."""
        for record in lineage:
            index = int(record["member"])
            event = record["event"]
            if event == "start":
                member = Member(index, dict(record["params"]))
                self.members[index] = member
                self._plan(member, record["job_record"])
            elif event == "ready":
                member = self.members[index]
                member.scores[int(record["epoch"])] = float(record["score"])
                # where its next segment starts (past the ready point, after an exploit)
                member.epoch = int(record["job_record"]["params"][START_EPOCH])
                member.done_job = str(record["done_job"])
                member.done_epoch = int(record["epoch"])
                member.done_params = dict(record["params_before"])
                self._kept.add(member.done_job)
                member.params = dict(record["params_after"])
                self._plan(member, record["job_record"])
            elif event == "end":
                member = self.members[index]
                member.scores[int(record["epoch"])] = float(record["score"])
                member.epoch = member.done_epoch = int(record["epoch"])
                member.done_job = str(record["job"])
                member.done_params = dict(member.params)
                member.finished = True
            elif event == "failed":
                self.members[index].failed = True
        if not self.members:
            self._start()
            return
        for member in self.members.values():
            if member.job is None or member.finished or member.failed:
                continue
            if self.store.state(member.job.id) is JobState.DONE:
                self._ready(member, self.store.result(member.job.id) or {})

    def _start(self) -> None:
        rng = random.Random(f"pbt-start-{self.config.seed}")
        records: list[dict[str, Any]] = []
        for index in range(self.config.population):
            params = self.config.scheduled(0) or {name: sample(dim, rng)
                                                  for name, dim in self.space.items()}
            member = Member(index, params)
            self.members[index] = member
            job = self._segment(member, None)
            records.append({"event": "start", "member": index, "epoch": 0, "params": params,
                            "job": job.id, "job_record": job.to_record()})
        self._write(records)
        for record in records:
            self._plan(self.members[int(record["member"])], record["job_record"])

    def _ready(self, member: Member, result: dict[str, Any]) -> None:
        """The member's segment is done: record its score and decide its next segment."""
        assert member.job is not None
        done_job = member.job
        end = int(done_job.params["epochs"])
        score = _score(result, self.config.metric)
        member.scores[end] = score
        member.epoch = member.done_epoch = end
        member.done_job = done_job.id
        member.done_params = dict(member.params)
        if end >= self.config.epochs:
            member.finished = True
            self._write([{"event": "end", "member": member.index, "epoch": end,
                          "score": score, "job": done_job.id}])
            self._prune()
            return
        scheduled = self.config.scheduled(end)
        source = None if scheduled is not None else self._exploit(member)
        before = dict(member.params)
        if scheduled is not None:
            after, init = scheduled, done_job.id
        elif source is None:
            after, init = before, done_job.id
        else:
            assert source.done_job is not None
            after, init = self._explore(source.done_params, member, end), source.done_job
            # The copied weights have trained the source's epochs: the member goes on
            # from there (as far as its own epoch, or further).
            member.epoch = source.done_epoch
        member.params = after
        job = self._segment(member, init)
        record: dict[str, Any] = {
            "event": "ready", "member": member.index, "epoch": end, "score": score,
            "copied_from": None if source is None else source.index,
            "from_job": init, "done_job": done_job.id, "params_before": before,
            "params_after": after, "job": job.id, "job_record": job.to_record()}
        self._write([record])
        self._plan(member, record["job_record"])
        self._kept.add(done_job.id)
        self._prune()

    def _exploit(self, member: Member) -> Member | None:
        """A random top member when ``member`` is in the bottom quantile of the members'
        latest scores (each member's last ready point, itself included: asynchronous, as
        the CANDLE Supervisor's score table and Ray Tune rank), else None. Only a member
        whose checkpoint is at least as far as the copier's epoch is copied, and the
        copier goes on from that checkpoint's epoch: a model's epochs are always the epochs
        its weights trained, and every segment takes its member further (no member can
        go round in circles)."""
        ranked = [m for m in self.members.values() if m.latest is not None and not m.failed]
        if len(ranked) < 2 or member not in ranked:
            return None
        sign = 1.0 if self.config.direction == "minimize" else -1.0
        ranked.sort(key=lambda m: _rank_key(m.latest, sign, m.index))  # best first
        cut = max(1, math.floor(self.config.truncate * len(ranked) + 0.5))
        cut = min(cut, len(ranked) // 2)
        if cut < 1 or member not in ranked[-cut:]:
            return None
        # A finished member's last segment kept its model, not its optimizer state.
        top = [m for m in ranked[:cut] if not m.finished and m.done_job is not None
               and m.done_epoch >= member.epoch]
        if not top:
            return None
        rng = random.Random(f"pbt-exploit-{self.config.seed}-{member.index}-{member.epoch}")
        return rng.choice(top)

    def _explore(self, params: dict[str, Any], member: Member, epoch: int) -> dict[str, Any]:
        """The source's hyperparameters, each mutable one resampled or perturbed."""
        rng = random.Random(f"pbt-explore-{self.config.seed}-{member.index}-{epoch}")
        out = dict(params)
        for name in self.config.mutable:
            dim = self.space.get(name)
            if dim is None:
                continue
            if rng.random() < self.config.resample:
                out[name] = sample(dim, rng)
            else:
                out[name] = perturb(dim, out[name], rng.choice(self.config.perturb))
        return out

    def _segment(self, member: Member, init: str | None) -> Job:
        """The member's next segment: from its epoch to the next ready point."""
        start = member.epoch
        end = min(self.config.epochs, start + self.config.ready)
        t = self.template
        params = {**t.params, **member.params, "epochs": end, START_EPOCH: start,
                  INIT_FROM: str(self.store.job_dir(init)) if init is not None else None,
                  KEEP_STATE: end < self.config.epochs, MEMBER: member.index}
        seed = t.base_seed + REPLICA_SEED_STRIDE * member.index
        serial = member.index * 100_000 + start  # one segment per member and start
        job_id = _hashed(_canonical(t.benchmark), _canonical(params), _canonical(t.settings),
                         None, 0, serial, None, seed)
        return Job(id=job_id, point=member.index, point_params=dict(member.params),
                   params=params, fold=None, folds=None, replica=0, seed=seed,
                   settings=t.settings)

    def _plan(self, member: Member, record: dict[str, Any]) -> None:
        job = Job.from_record(record)
        if job.id not in self._known:
            self.store.append_jobs([job])
            self._known.add(job.id)
        if member.job is not None:
            self._by_job.pop(member.job.id, None)
        member.job = job
        member.launched = False
        self._by_job[job.id] = member

    def _prune(self) -> None:
        """Remove the checkpoints no decision can use any more: a segment's weights and
        optimizer state serve its member's next decision (own, or another's exploit) and
        the segments planned from it; once its member has moved on and they have started
        from it, nothing reads them again (at NT3's width, ~3.6 GB a segment with Adam).
        Its result stays. A user model's own state files are its own to keep."""
        live = [m for m in self.members.values() if not m.failed]
        referenced = {m.done_job for m in live if m.done_job is not None}
        for member in live:
            if member.job is not None and not member.finished and member.job.params.get(
                    INIT_FROM):
                referenced.add(Path(str(member.job.params[INIT_FROM])).name)
        for job_id in sorted(self._kept - referenced):
            shutil.rmtree(self.store.job_dir(job_id) / CHECKPOINTS, ignore_errors=True)
            self._kept.discard(job_id)

    def _write(self, records: list[dict[str, Any]]) -> None:
        append_records(self.store.root / LINEAGE, records)


def perturb(dim: Dimension, value: Any, factor: float) -> Any:
    """``value`` moved by ``factor`` inside ``dim``: floats and ints scaled and clipped to
    the range, a choice to the neighbouring value (up when factor > 1, down otherwise)."""
    if isinstance(dim, Choice):
        values = list(dim.values)
        if value not in values:
            return value
        index = values.index(value) + (1 if factor > 1 else -1)
        return values[min(len(values) - 1, max(0, index))]
    if isinstance(dim, IntRange):
        moved = round(float(value) * factor)
        if moved == value:
            moved += 1 if factor > 1 else -1
        return int(min(dim.high, max(dim.low, moved)))
    if isinstance(dim, Uniform):
        return float(f"{min(dim.high, max(dim.low, float(value) * factor)):.6g}")
    return value


def _score(result: dict[str, Any], metric: str) -> float:
    value = (result.get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, int | float) else math.nan


def _rank_key(value: float | None, sign: float, index: int) -> tuple[bool, float, int]:
    """Best first; a missing or non-finite score ranks last in either direction."""
    if value is None or not math.isfinite(value):
        return True, 0.0, index
    return False, sign * value, index


def finished_members(root: Path) -> int:
    """Members that trained all their epochs or failed for good (the lineage says so)."""
    return len({int(r["member"]) for r in read_lineage(root) if r["event"] in ("end", "failed")})


def segments_per_member(epochs: int, ready: int) -> int:
    """A member's segments when it never jumps ahead by an exploit (the most it runs)."""
    return math.ceil(epochs / ready)


def ancestry(lineage: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The segments whose training the weights of ``job_id`` carry, first to last: each
    segment starts from its parent's checkpoint (``init_from``), through the copies of
    exploits; their epochs join up from 0. Each: {"job", "start", "end", "params"} (the
    searched params it trained with)."""
    planned = {r["job"]: r for r in lineage if r.get("job_record")}
    chain: list[dict[str, Any]] = []
    current: str | None = job_id
    while current is not None and current in planned:
        record = planned[current]
        params = record["job_record"]["params"]
        chain.append({"job": current, "start": int(params[START_EPOCH]),
                      "end": int(params["epochs"]),
                      "params": dict(record["job_record"]["point_params"])})
        parent = params.get(INIT_FROM)
        current = Path(str(parent)).name if parent else None
    chain.reverse()
    return chain
