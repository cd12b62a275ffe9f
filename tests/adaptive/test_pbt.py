"""search.method: pbt (issue 20). Segments are jobs that start from an earlier segment's
checkpoint; the lineage records every decision once, before its segment is planned, so a
supervisor killed at any moment resumes without losing or repeating a step. Exploiting
copies the source's weights and optimizer state (checksums in the segment's result)."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from candle.adaptive.pbt import LINEAGE, ancestry, perturb, read_lineage
from candle.spec.model import Choice, IntRange, Uniform
from candle.state import JobState
from candle.store import RunStore
from candle.store.run_store import ATTEMPTS
from tests.conftest import candle_cmd, write

# A simulated model whose state is a loss in its job directory: each epoch multiplies it by
# (1 - lr) and adds a floor of lr / 10 (so the best lr shrinks as training goes on). It
# starts from init_from's state, at start_epoch; x == 3 crashes once, mid-segment, after
# saving the epoch it reached (its retry resumes from its own state).
MODEL = """
import json, os, time
from pathlib import Path

import candle


def f(params):
    job_dir = Path(params["job_dir"])
    own = job_dir / "state.json"
    if own.exists():
        state = json.loads(own.read_text())
    elif params.get("init_from"):
        state = json.loads((Path(params["init_from"]) / "state.json").read_text())
        state["epoch"] = params["start_epoch"]
    else:
        state = {"epoch": 0, "loss": 1.0}
    lr = params["lr"]
    with open(job_dir.parent.parent / "epochs.log", "a") as log:
        for epoch in range(state["epoch"] + 1, params["epochs"] + 1):
            time.sleep(params.get("epoch_s", 0))
            state = {"epoch": epoch, "loss": state["loss"] * (1 - lr) + lr / 10}
            own.write_text(json.dumps(state))
            log.write(f"{params['member']} {epoch}\\n")
            log.flush()
            candle.report(epoch, {"val_loss": state["loss"]})
            crash = job_dir / "crashed"
            if params.get("crash_member") == params["member"] and epoch == 3 \\
                    and not crash.exists():
                crash.write_text("")
                os._exit(9)
    return {"val_loss": state["loss"]}
"""


def pbt_sweep(tmp_path: Path, *, population: int = 4, epochs: int = 8, ready: int = 2,
              epoch_s: float = 0.0, concurrent: int = 2, extra: str = "") -> Path:
    write(tmp_path / "model.py", MODEL)
    return write(tmp_path / "sweep.yaml", f"""
        name: pbt
        benchmark: "model:f"
        params: {{epochs: {epochs}, epoch_s: {epoch_s}{extra}}}
        search:
          method: pbt
          population: {population}
          ready: {ready}
          exploit: {{truncate: 0.25}}
          explore: {{perturb: [0.8, 1.2], resample: 0.25}}
          space: {{lr: {{loguniform: [0.01, 0.9]}}}}
          metric: val_loss
          seed: 3
        resources: {{max_concurrent: {concurrent}}}
        retries: 1
    """)


def check_lineage(root: Path, population: int, epochs: int, ready: int) -> list[dict[str, Any]]:
    """Per member: one start, a ready record at the end of each segment it ran, one end at
    the last epoch; each decision's segment is the one its member ran next, ending where it
    was planned to; each segment starts further on than the last (an exploit continues
    from the source's epoch, never behind its own), so no segment is planned twice."""
    lineage = read_lineage(root)
    store = RunStore(root)
    for member in range(population):
        mine = [r for r in lineage if r["member"] == member]
        events = [r["event"] for r in mine]
        assert events[0] == "start" and events[-1] == "end", events
        assert set(events[1:-1]) <= {"ready"} and mine[-1]["epoch"] == epochs
        for before, after in itertools.pairwise(mine):
            ran = after["done_job"] if after["event"] == "ready" else after["job"]
            assert ran == before["job"]  # the segment decided is the one that ran
            planned = before["job_record"]["params"]
            assert after["epoch"] == planned["epochs"]  # ...and ended where planned
            assert 0 < planned["epochs"] - planned["start_epoch"] <= ready
            assert store.state(ran) is JobState.DONE
        starts = [r["job_record"]["params"]["start_epoch"] for r in mine[:-1]]
        assert starts[0] == 0 and all(a < b for a, b in itertools.pairwise(starts)), starts
    planned = [r["job"] for r in lineage if "job_record" in r]
    assert len(planned) == len(set(planned))  # a segment planned again would loop for ever
    return lineage


def epochs_trained(root: Path) -> dict[int, list[int]]:
    """Each member's epochs as its model logged them."""
    per_member: dict[int, list[int]] = {}
    for line in (root / "epochs.log").read_text().splitlines():
        member, epoch = map(int, line.split())
        per_member.setdefault(member, []).append(epoch)
    return per_member


def assert_each_segment_trained_once(root: Path) -> None:
    """Every member logged exactly its segments' epochs, in order: none lost, none twice
    (a crash or a kill resumed where it stopped)."""
    lineage = read_lineage(root)
    for member, trained in epochs_trained(root).items():
        planned = [r["job_record"]["params"] for r in lineage
                   if r["member"] == member and "job_record" in r]
        want = [e for p in planned for e in range(p["start_epoch"] + 1, p["epochs"] + 1)]
        assert trained == want, (member, trained, want)


@pytest.mark.slow
def test_a_population_trains_exploits_and_records_every_step(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", str(pbt_sweep(tmp_path)))
    assert result.code == 0, result.err
    root = tmp_path / "runs" / "pbt"
    lineage = check_lineage(root, 4, 8, 2)
    copies = [r for r in lineage if r["event"] == "ready" and r["copied_from"] is not None]
    assert copies, "nobody exploited"
    for record in copies:
        # the copy starts from a segment the source member had finished by then
        finished = [r["done_job"] for r in lineage if r["member"] == record["copied_from"]
                    and r["event"] == "ready" and r["epoch"] <= record["epoch"]]
        assert record["from_job"] in finished
        # explore: the source's lr, scaled by a perturb factor or resampled in the range
        assert 0.01 <= record["params_after"]["lr"] <= 0.9
    # every segment's state came from the job its decision named
    store = RunStore(root)
    for record in lineage:
        if record["event"] != "ready":
            continue
        job = store.result(record["job"]) or {}
        params = json.loads((store.job_dir(record["job"]) / "params.json").read_text())
        assert params["params"]["init_from"] == str(store.job_dir(record["from_job"]))
        if record["copied_from"] is None:  # its own checkpoint: on from where it was
            assert params["params"]["start_epoch"] == record["epoch"]
        assert job["status"] == "done"
    assert_each_segment_trained_once(root)
    # an exploit continues from the source's epoch: the copier's next segment starts there
    for record in copies:
        source_end = next(r["epoch"] for r in lineage if r["event"] == "ready"
                          and r["done_job"] == record["from_job"])
        assert record["job_record"]["params"]["start_epoch"] == source_end


@pytest.mark.slow
def test_a_sigkilled_supervisor_resumes_from_the_lineage(tmp_path: Path) -> None:
    sweep = pbt_sweep(tmp_path, epoch_s=0.1)
    root = tmp_path / "runs" / "pbt"
    proc = subprocess.Popen(candle_cmd("run", str(sweep)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(read_lineage(root) if (root / LINEAGE).exists() else []) < 7:
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the supervisor, its worker and its jobs
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    cut = read_lineage(root)
    assert 7 <= len(cut) < 4 + 3 * 4 + 4  # cut short
    again = subprocess.run(candle_cmd("run", str(sweep)), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    lineage = check_lineage(root, 4, 8, 2)
    assert lineage[: len(cut)] == cut  # nothing recorded before was decided again


@pytest.mark.slow
def test_a_crashed_member_is_retried_from_its_own_checkpoint(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", str(pbt_sweep(tmp_path, population=2, extra=", crash_member: 1")))
    assert result.code == 0, result.err
    root = tmp_path / "runs" / "pbt"
    lineage = check_lineage(root, 2, 8, 2)
    # the segment of member 1 that trained epoch 3 (the model crashes there once)
    crashed = next(r["job"] for r in lineage if r["member"] == 1 and "job_record" in r
                   and r["job_record"]["params"]["start_epoch"] < 3
                   <= r["job_record"]["params"]["epochs"])
    store = RunStore(root)
    [attempt] = [json.loads(line) for line in
                 (store.job_dir(crashed) / ATTEMPTS).read_text().splitlines()]
    assert "exited with code 9" in attempt["error"]
    assert_each_segment_trained_once(root)


def test_perturb_moves_within_the_space() -> None:
    assert perturb(Uniform(0.01, 1.0, True), 0.5, 1.2) == 0.6
    assert perturb(Uniform(0.01, 1.0, True), 0.9, 1.2) == 1.0  # clipped
    assert perturb(IntRange(1, 10), 5, 0.8) == 4
    assert perturb(IntRange(1, 10), 1, 0.8) == 1
    assert perturb(IntRange(1, 100), 2, 1.2) == 3  # always moves, unless at the edge
    assert perturb(Choice((16, 32, 64)), 32, 1.2) == 64
    assert perturb(Choice((16, 32, 64)), 32, 0.8) == 16
    assert perturb(Choice((16, 32, 64)), 16, 0.8) == 16


NT3_PBT = """
name: pbt-nt3
benchmark: nt3
params: {{epochs: 4, features: 120, samples: 200, batch_size: 16, optimizer: adam,
         signal_strength: 4.0, signal_genes: 0.3}}
search:
  method: pbt
  population: 2
  ready: 2
  exploit: {{truncate: 0.5}}
  explore: {{perturb: [1.2], resample: 0.0}}
  space: {{learning_rate: [0.0000001, 0.003]}}
  metric: val_loss
  seed: {seed}
resources: {{max_concurrent: 1, ranks_per_job: {ranks}}}
"""


def seed_for_good_then_bad() -> int:
    """A search seed whose member 0 draws the useful learning rate and member 1 the
    useless one (so member 1, one at a time, is behind at its first ready point)."""
    for seed in range(1000):
        rng = random.Random(f"pbt-start-{seed}")
        draws = [rng.choice((0.0000001, 0.003)) for _ in range(2)]
        if draws == [0.003, 0.0000001]:
            return seed
    raise AssertionError("no such seed")


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("ranks", [1, 2])
def test_exploiting_copies_weights_and_optimizer_state(tmp_path: Path, cli, ranks: int) -> None:  # type: ignore[no-untyped-def]
    sweep = write(tmp_path / "nt3.yaml", NT3_PBT.format(seed=seed_for_good_then_bad(),
                                                        ranks=ranks))
    result = cli("run", str(sweep))
    assert result.code == 0, result.err
    root = tmp_path / "runs" / "pbt-nt3"
    store = RunStore(root)
    lineage = check_lineage(root, 2, 4, 2)
    [copy] = [r for r in lineage if r["event"] == "ready" and r["copied_from"] is not None]
    assert (copy["member"], copy["copied_from"], copy["epoch"]) == (1, 0, 2)
    assert copy["params_after"] == {"learning_rate": 0.003}  # member 0's: the top of the list
    loaded = (store.result(copy["job"]) or {})["init"]
    assert loaded["from"] == str(store.job_dir(copy["from_job"])) and loaded["epoch"] == 2
    saved = (store.result(copy["from_job"]) or {})["saved"]  # what the source wrote
    assert loaded["weights"] == saved["weights"]
    assert loaded["optimizer"] == saved["optimizer"] and saved["optimizer"] is not None
    # ... and not the member's own state: its own segment's checkpoint differs
    own = (store.result(copy["done_job"]) or {})["saved"]
    assert loaded["weights"] != own["weights"] and loaded["optimizer"] != own["optimizer"]
    # every member's own continuation loaded exactly what its previous segment saved
    for record in lineage:
        if record["event"] == "ready" and record["copied_from"] is None:
            init = (store.result(record["job"]) or {})["init"]
            before = (store.result(record["from_job"]) or {})["saved"]
            assert (init["weights"], init["optimizer"]) == (before["weights"],
                                                            before["optimizer"])
    # once every member has finished, only the last segments (planned at epoch 2) keep a
    # model; the first segments' weights and optimizer state, used up, are gone
    for record in lineage:
        if record["event"] in ("start", "ready"):
            files = {p.name for p in (store.job_dir(record["job"]) / "ckpt").glob("*")}
            assert files == (set() if record["event"] == "start" else {"model.keras"})
    final = store.result(lineage[-1]["job"]) or {}
    assert final["model_file"] == "ckpt/model.keras"  # the last segment keeps its model
    if ranks == 2:
        for record in lineage:
            if record["event"] in ("start", "ready"):
                ran = store.result(record["job"]) or {}
                assert ran["horovod"]["size"] == 2
                assert len({r["weights"] for r in ran["horovod"]["ranks"]}) == 1


@pytest.mark.slow
def test_the_best_members_schedule_is_replayed_by_candle_train(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from candle.reporting.pbt import summarise_pbt

    assert cli("run", str(pbt_sweep(tmp_path, epochs=6))).code == 0
    root = tmp_path / "runs" / "pbt"
    best = summarise_pbt(RunStore(root)).rows[0]
    # the schedule its final weights trained under: through exploits, epochs join up
    chain = ancestry(read_lineage(root), best.segments[-1].job)
    assert chain[0]["start"] == 0 and chain[-1]["end"] == 6
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(chain))
    schedule = [(s["start"], s["params"]) for s in chain]
    out = tmp_path / "replay"
    made = cli("train", "--from", str(root), "--best", "--replicas", "2", "--out", str(out))
    assert made.code == 0, made.err
    replay = read_lineage(out)
    for member in (0, 1):  # each replica follows the schedule, and nobody exploits
        mine = [r for r in replay if r["member"] == member]
        assert mine[0]["params"] == schedule[0][1]
        steps = [(r["epoch"], r["params_after"]) for r in mine if r["event"] == "ready"]
        assert steps == schedule[1:]
        assert all(r.get("copied_from") is None for r in mine)
    card = json.loads((out / "model.json").read_text())
    assert card["source"]["point"] == best.member
    assert card["source"]["schedule"] == [{"start": s, "params": p} for s, p in schedule]
    assert sorted(m["replica"] for m in card["members"]) == [0, 1]
    seeds = {m["seed"] for m in card["members"]}
    assert len(seeds) == 2  # two seeds, one schedule
    again = cli("train", "--from", str(root), "--best", "--replicas", "2", "--out", str(out))
    assert again.code == 0 and "replay: 0 done, 0 failed" in again.out  # nothing trained again
    assert read_lineage(out) == replay
